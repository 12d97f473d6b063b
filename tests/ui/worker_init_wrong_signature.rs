fn set_up() -> anyhow::Result<()> {
    Ok(())
}

#[conductor::worker(type = "needs_set_up", init = set_up)]
fn needs_set_up(job: u32) -> anyhow::Result<u32> {
    Ok(job)
}

#[conductor::worker(type = "bad_init_value", init = "set_up")]
fn bad_init_value(job: u32) -> anyhow::Result<u32> {
    Ok(job)
}

fn main() {}
