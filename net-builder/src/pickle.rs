//! A small, bounded Python pickle reader: enough of the virtual machine to recover the object
//! tree of `torch.save` files (protocols 2–5), without executing anything.
//!
//! Containers live in an arena so that a memoized dict mutated later (`SETITEMS` after
//! `BINPUT`) is the same object when fetched again, as in Python. Every count is bounded, so a
//! hostile file costs at most its own size in work.

use std::fmt;

/// Most operations one pickle may execute.
const MAX_OPS: usize = 10_000_000;
/// Most values on the stack, or objects in the arena.
const MAX_ITEMS: usize = 1_000_000;

/// A value on the pickle stack.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    /// None.
    #[default]
    None,
    /// A bool.
    Bool(bool),
    /// An integer that fits i64.
    Int(i64),
    /// A wider integer, as its little-endian two's-complement bytes.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// bytes.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A global `module.name`, not resolved.
    Global(String, String),
    /// A list, dict or object in the arena.
    Ref(usize),
    /// A persistent id (torch storages).
    PersistentId(Box<Value>),
}

/// Containers and objects, mutable after creation.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// A list.
    List(Vec<Value>),
    /// A dict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// The result of calling `callable(*args)`: `state` from BUILD, and the items or elements
    /// set on it (an `OrderedDict` gets items, for example).
    Object {
        /// What was called (usually a global).
        callable: Value,
        /// The arguments (a tuple).
        args: Value,
        /// BUILD's state.
        state: Option<Value>,
        /// Items set with SETITEM(S).
        items: Vec<(Value, Value)>,
        /// Elements added with APPEND(S).
        elements: Vec<Value>,
    },
}

/// Why a pickle could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickleError {
    /// The data ended early.
    #[error("pickle ends unexpectedly at byte {0}")]
    Truncated(usize),
    /// An opcode this reader does not know.
    #[error("unsupported pickle opcode 0x{op:02x} at byte {pos}")]
    UnknownOpcode {
        /// The opcode.
        op: u8,
        /// Its position.
        pos: usize,
    },
    /// The pickle is inconsistent.
    #[error("malformed pickle at byte {pos}: {what}")]
    Malformed {
        /// Position.
        pos: usize,
        /// What is wrong.
        what: String,
    },
    /// A limit was reached.
    #[error("pickle exceeds the limit on {0}")]
    Limit(&'static str),
}

/// A parsed pickle: its root value and the arena its references point into.
#[derive(Debug, Default)]
pub struct Pickle {
    /// The arena.
    pub nodes: Vec<Node>,
    /// The root value.
    pub root: Value,
    /// Bytes consumed (pickles can be concatenated).
    pub consumed: usize,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Global(m, n) => write!(f, "{m}.{n}"),
            Self::Str(s) => write!(f, "{s:?}"),
            other => write!(f, "{other:?}"),
        }
    }
}

enum Slot {
    Mark,
    Val(Value),
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: std::collections::HashMap<u32, Value>,
    nodes: Vec<Node>,
}

impl<'a> Vm<'a> {
    fn err(&self, what: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            pos: self.pos,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(PickleError::Truncated(self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated(self.pos))?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        if self.stack.len() >= MAX_ITEMS {
            return Err(PickleError::Limit("stack size"));
        }
        self.stack.push(Slot::Val(v));
        Ok(())
    }

    fn node(&mut self, n: Node) -> Result<Value, PickleError> {
        if self.nodes.len() >= MAX_ITEMS {
            return Err(PickleError::Limit("number of objects"));
        }
        self.nodes.push(n);
        Ok(Value::Ref(self.nodes.len() - 1))
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(Slot::Val(v)) => Ok(v),
            Some(Slot::Mark) => Err(self.err("unexpected mark")),
            None => Err(self.err("stack underflow")),
        }
    }

    fn top(&self) -> Result<&Value, PickleError> {
        match self.stack.last() {
            Some(Slot::Val(v)) => Ok(v),
            _ => Err(self.err("no value on the stack")),
        }
    }

    /// Pops everything above the last mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| self.err("no mark"))?;
        let items = self
            .stack
            .drain(mark..)
            .skip(1)
            .map(|s| match s {
                Slot::Val(v) => v,
                Slot::Mark => Value::None,
            })
            .collect();
        Ok(items)
    }

    fn add_items(&mut self, target: &Value, pairs: Vec<(Value, Value)>) -> Result<(), PickleError> {
        let Value::Ref(i) = target else {
            return Err(self.err("SETITEM on a non-container"));
        };
        match &mut self.nodes[*i] {
            Node::Dict(d) => d.extend(pairs),
            Node::Object { items, .. } => items.extend(pairs),
            Node::List(_) => return Err(self.err("SETITEM on a list")),
        }
        Ok(())
    }

    fn add_elements(&mut self, target: &Value, vals: Vec<Value>) -> Result<(), PickleError> {
        let Value::Ref(i) = target else {
            return Err(self.err("APPEND on a non-container"));
        };
        match &mut self.nodes[*i] {
            Node::List(l) => l.extend(vals),
            Node::Object { elements, .. } => elements.extend(vals),
            Node::Dict(_) => return Err(self.err("APPEND on a dict")),
        }
        Ok(())
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        if self.memo.len() >= MAX_ITEMS {
            return Err(PickleError::Limit("memo size"));
        }
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| self.err(format!("memo key {key} missing")))?;
        self.push(v)
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of dict items"));
        }
        let mut it = items.into_iter();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        for _ in 0..MAX_OPS {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack.pop();
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let b = self.take(4)?;
                    self.push(Value::Int(
                        i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64
                    ))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?
                }
                b'M' => {
                    let b = self.take(2)?;
                    self.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64))?
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        self.u32()? as usize
                    };
                    if n > 8 {
                        let b = self.take(n)?.to_vec();
                        self.push(Value::BigInt(b))?;
                        continue;
                    }
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Value::Int(v))?
                }
                b'I' | b'L' => {
                    let l = self.line()?;
                    let t = l.trim_end_matches('L');
                    let v = match t {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => Value::Int(t.parse().map_err(|_| self.err("bad integer"))?),
                    };
                    self.push(v)?
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Value::Float(f64::from_be_bytes(a)))?
                }
                b'F' => {
                    let l = self.line()?;
                    let v = l.trim().parse().map_err(|_| self.err("bad float"))?;
                    self.push(Value::Float(v))?
                }
                b'X' | 0x8c | 0x8d | b'T' | b'U' | b'B' | b'C' | 0x8e => {
                    let n = match op {
                        0x8c | b'U' | b'C' => self.u8()? as usize,
                        0x8d | 0x8e => {
                            let b = self.take(8)?;
                            let mut a = [0u8; 8];
                            a.copy_from_slice(b);
                            usize::try_from(u64::from_le_bytes(a))
                                .map_err(|_| self.err("length too large"))?
                        }
                        _ => self.u32()? as usize,
                    };
                    let b = self.take(n)?.to_vec();
                    let v = match op {
                        b'B' | b'C' | 0x8e => Value::Bytes(b),
                        _ => Value::Str(String::from_utf8_lossy(&b).into_owned()),
                    };
                    self.push(v)?
                }
                b'V' => {
                    let l = self.line()?;
                    self.push(Value::Str(l))?
                }
                b'S' => {
                    let l = self.line()?;
                    self.push(Value::Str(
                        l.trim_matches(|c| c == '\'' || c == '"').to_string(),
                    ))?
                }
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items))?
                }
                b']' => {
                    let v = self.node(Node::List(Vec::new()))?;
                    self.push(v)?
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.node(Node::List(items))?;
                    self.push(v)?
                }
                b'}' => {
                    let v = self.node(Node::Dict(Vec::new()))?;
                    self.push(v)?
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    let v = self.node(Node::Dict(pairs))?;
                    self.push(v)?
                }
                0x8f => {
                    let v = self.node(Node::List(Vec::new()))?;
                    self.push(v)?
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.add_elements(&target, items)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?
                }
                b'a' => {
                    let v = self.pop()?;
                    let target = self.top()?.clone();
                    self.add_elements(&target, vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.add_elements(&target, items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.top()?.clone();
                    self.add_items(&target, vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    let target = self.top()?.clone();
                    self.add_items(&target, pairs)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(module, name))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push(Value::Global(m, n))?,
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.node(Node::Object {
                        callable,
                        args,
                        state: None,
                        items: Vec::new(),
                        elements: Vec::new(),
                    })?;
                    self.push(v)?
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.node(Node::Object {
                        callable,
                        args,
                        state: None,
                        items: Vec::new(),
                        elements: Vec::new(),
                    })?;
                    self.push(v)?
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?.clone();
                    match target {
                        Value::Ref(i) => match &mut self.nodes[i] {
                            Node::Object { state: s, .. } => *s = Some(state),
                            _ => return Err(self.err("BUILD on a container")),
                        },
                        _ => return Err(self.err("BUILD on a plain value")),
                    }
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                b'p' => {
                    let l = self.line()?;
                    let k = l.trim().parse().map_err(|_| self.err("bad memo key"))?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'g' => {
                    let l = self.line()?;
                    let k = l.trim().parse().map_err(|_| self.err("bad memo key"))?;
                    self.memo_get(k)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Value::PersistentId(Box::new(pid)))?
                }
                b'P' => {
                    let l = self.line()?;
                    self.push(Value::PersistentId(Box::new(Value::Str(l))))?
                }
                _ => return Err(PickleError::UnknownOpcode { op, pos: at }),
            }
        }
        Err(PickleError::Limit("number of operations"))
    }
}

/// Reads one pickle from the start of `data`.
pub fn parse(data: &[u8]) -> Result<Pickle, PickleError> {
    let mut vm = Vm {
        data,
        pos: 0,
        stack: Vec::new(),
        memo: Default::default(),
        nodes: Vec::new(),
    };
    let root = vm.run()?;
    Ok(Pickle {
        nodes: vm.nodes,
        root,
        consumed: vm.pos,
    })
}

impl Pickle {
    /// The node a value refers to.
    pub fn node(&self, v: &Value) -> Option<&Node> {
        match v {
            Value::Ref(i) => self.nodes.get(*i),
            _ => None,
        }
    }

    /// The key-value pairs of a dict or a dict-like object (OrderedDict), or of an object's
    /// state when the state is a dict.
    pub fn items<'p>(&'p self, v: &Value) -> Option<&'p [(Value, Value)]> {
        match self.node(v)? {
            Node::Dict(d) => Some(d),
            Node::Object { items, state, .. } => {
                if items.is_empty() {
                    if let Some(s) = state {
                        if let Some(Node::Dict(d)) = self.node(s) {
                            return Some(d);
                        }
                    }
                }
                Some(items)
            }
            Node::List(_) => None,
        }
    }

    /// `dict[key]` for a string key.
    pub fn get<'p>(&'p self, v: &Value, key: &str) -> Option<&'p Value> {
        self.items(v)?
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_protocol_2_dict_with_memo_and_mutation() {
        // pickle.dumps({'a': [1, 2], 'b': (True, None, 3.5), 'c': 'a'}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02eX\x01\x00\x00\x00bq\x03\x88NG@\x0c\x00\x00\x00\x00\x00\x00\x87q\x04X\x01\x00\x00\x00cq\x05h\x01u.";
        let p = parse(data).unwrap();
        let a = p.get(&p.root, "a").unwrap();
        assert_eq!(
            p.node(a),
            Some(&Node::List(vec![Value::Int(1), Value::Int(2)]))
        );
        assert_eq!(
            p.get(&p.root, "b"),
            Some(&Value::Tuple(vec![
                Value::Bool(true),
                Value::None,
                Value::Float(3.5)
            ]))
        );
        assert_eq!(p.get(&p.root, "c"), Some(&Value::Str("a".into())));
        assert_eq!(p.consumed, data.len());
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        for data in [
            &b""[..],
            b"\x80\x02",
            b"\x80\x02h\x05.",
            b"\x80\x02u.",
            b"\x80\x02\xff",
            b"\x80\x02X\xff\xff\xff\xff",
            b"(((((",
        ] {
            assert!(parse(data).is_err(), "{data:?}");
        }
    }
}
