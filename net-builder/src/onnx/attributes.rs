//! Node attributes: ints, pairs, paddings.

use super::error::NodeFault;
use super::proto::{AttributeProto, NodeProto};
use super::tensor::bad;
use crate::ImportError;

pub(super) fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

pub(super) fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

pub(super) fn attr_int(n: &NodeProto, name: &str) -> Option<i64> {
    attr(n, name).and_then(|a| a.i)
}

pub(super) fn pair(
    v: &[i64],
    node: &str,
    op: &str,
    attribute: &'static str,
) -> Result<[usize; 2], ImportError> {
    match v {
        &[a, b] if a >= 0 && b >= 0 => Ok([a as usize, b as usize]),
        _ => Err(bad(
            node,
            op,
            NodeFault::NotAPair {
                attribute,
                values: v.to_vec(),
            },
        )),
    }
}

/// [top, left, bottom, right] → symmetric [h, w].
pub(super) fn pads(n: &NodeProto, node: &str, op: &str) -> Result<[usize; 2], ImportError> {
    if let Some(a) = attr(n, "auto_pad").and_then(|a| a.s.as_deref()) {
        if !a.is_empty() && a != b"NOTSET" {
            return Err(bad(
                node,
                op,
                NodeFault::AutoPad {
                    auto_pad: String::from_utf8_lossy(a).into_owned(),
                },
            ));
        }
    }
    match attr_ints(n, "pads").as_deref() {
        None | Some([]) => Ok([0, 0]),
        Some(&[t, l, b, r]) if t == b && l == r && t >= 0 && l >= 0 => Ok([t as usize, l as usize]),
        Some(p) => Err(bad(
            node,
            op,
            NodeFault::AsymmetricPadding { pads: p.to_vec() },
        )),
    }
}
