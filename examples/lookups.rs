//! Lookup tables held once by the master and read by every worker.
//!
//! Run it with `cargo run --example lookups`.

use conductor::{Conductor, Worker};

/// Names a produce code using the master's tables, and remembers what it saw.
#[conductor::worker(type = "produce_namer")]
async fn name_produce(code: String, worker: &Worker) -> anyhow::Result<String> {
    let name = match worker.lookup::<String, _>("fruits", &code).await? {
        Some(fruit) => fruit,
        None => match worker.lookup::<String, _>("veggies", &code).await? {
            Some(veggie) => veggie,
            None => "unknown".to_string(),
        },
    };
    worker.set_lookup("seen", &code, &name).await?;
    Ok(name)
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    let conductor = Conductor::<String, String>::new("produce_namer")
        .worker_limit(2)
        .logging(false)
        .lookup_table("fruits", [("a", "apple"), ("b", "banana")])
        .lookup_table("veggies", [("c", "carrot"), ("d", "dill")])
        .jobs(["a", "b", "c", "d", "e", "f", "z"].map(String::from));
    let handle = conductor.handle();
    // The master can change a table before or during the run.
    handle.set_lookup("veggies", "e", "eggplant")?;
    handle.set_lookup("fruits", "f", "fig")?;
    println!(
        "fruits a = {:?}",
        handle.lookup::<String, _>("fruits", "a")?
    );
    let report = conductor.run().await?;
    let mut seen = handle
        .lookup_table::<String, String>("seen")?
        .unwrap_or_default();
    seen.sort();
    for (code, name) in seen {
        println!("{code} => {name}");
    }
    println!("{} jobs completed", report.completed());
    Ok(())
}
