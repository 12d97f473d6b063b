#[conductor::main]
async fn main(args: Vec<String>) -> anyhow::Result<()> {
    println!("{args:?}");
    Ok(())
}
