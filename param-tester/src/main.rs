//! `param-tester`: not built yet; see the open issues.

fn main() {
    eprintln!("param-tester: not built yet");
    std::process::exit(2);
}
