//! `server`: not built yet; see the open issues.

fn main() {
    eprintln!("server: not built yet");
    std::process::exit(2);
}
