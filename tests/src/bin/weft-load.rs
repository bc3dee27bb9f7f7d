//! `weft-load`: the traffic a user's workload makes, run inside a lab pod or host while the
//! operations tests restart, kill, upgrade and scale things (see `weft_tests::load`).

fn main() -> anyhow::Result<()> {
    weft_tests::load::main()
}
