#[conductor::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    Ok(())
}
