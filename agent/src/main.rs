//! The `weft` binary: the node agent, the CNI plugin (when `CNI_COMMAND` is set) and the CLI.

fn main() {
    eprintln!("weft: not implemented yet");
    std::process::exit(1);
}
