mod jobs {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Point {
        pub x: i64,
        pub y: i64,
    }

    #[conductor::worker(type = "square")]
    pub fn square(n: u64) -> anyhow::Result<u64> {
        Ok(n * n)
    }

    // Private, with a non-anyhow error type.
    #[conductor::worker(type = "parse")]
    fn parse(text: String) -> Result<u32, std::num::ParseIntError> {
        text.parse()
    }

    #[conductor::worker(type = "jobs.norm")]
    fn norm(point: Point, _worker: &conductor::Worker) -> std::io::Result<i64> {
        Ok(point.x.abs() + point.y.abs())
    }

    #[conductor::worker(type = "greet")]
    async fn greet(mut name: String) -> anyhow::Result<String> {
        name.insert_str(0, "hello ");
        Ok(name)
    }

    pub mod setup {
        pub fn open_pool(_worker: &conductor::Worker) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[conductor::worker(type = "with_init", init = setup::open_pool)]
    fn with_init(n: u8) -> anyhow::Result<u8> {
        Ok(n)
    }

    #[conductor::worker(init = self::setup::open_pool, type = "async_with_init")]
    async fn async_with_init(n: u8, _worker: &conductor::Worker) -> anyhow::Result<u8> {
        Ok(n)
    }

    #[conductor::worker(type = "jobs::sleep-ms")]
    pub(crate) async fn sleep(ms: u64, _worker: &conductor::Worker) -> anyhow::Result<()> {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        Ok(())
    }

    // No type name: the function's name is the worker type's name.
    #[conductor::worker]
    pub fn cube(n: u64) -> anyhow::Result<u64> {
        Ok(n * n * n)
    }
}

// Each fn worker is named by a type of its own name, so the job and output types
// are checked here, at compile time.
fn typed() -> conductor::Conductor<u64, u64> {
    conductor::Conductor::of::<jobs::square>()
}

fn typed_default_name() -> conductor::Conductor<u64, u64> {
    conductor::Conductor::of::<jobs::cube>().jobs(0..3)
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    let _ = (typed(), typed_default_name());
    Ok(())
}
