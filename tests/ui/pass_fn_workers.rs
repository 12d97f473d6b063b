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

    #[conductor::worker(type = "jobs::sleep-ms")]
    pub(crate) async fn sleep(ms: u64, _worker: &conductor::Worker) -> anyhow::Result<()> {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        Ok(())
    }
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    Ok(())
}
