//! The runs on a server, for an operator: any program built with conductor's `nats`
//! feature, started with `CONDUCTOR_RUNS` set, lists them, follows one, or removes a
//! finished or abandoned one's streams, and exits.
//!
//! ```text
//! CONDUCTOR_NATS_URL=nats://10.0.0.5:4222 CONDUCTOR_RUNS=list ./thumbnailer
//! CONDUCTOR_RUNS="follow thumbs-2026-11-28" CONDUCTOR_RUN_SECRET=5f0c... ./thumbnailer
//! CONDUCTOR_RUNS="remove thumbs-2026-11-28" ./thumbnailer
//! ```
//!
//! What the server holds (messages queued, held by workers, results stored) anyone
//! with access to the streams sees; the jobs' figures come from the run's master, sealed
//! with the run's secret (`CONDUCTOR_RUN_SECRET`), and only while it runs.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures_util::StreamExt;
use ring::rand::{SecureRandom, SystemRandom};

use super::auth::{redact, split_url};
use super::seal::{Purpose, RunKey, RunSecret};
use super::{connect, RunNames, WORKERS_CONSUMER};
use crate::settings::NatsAuth;

/// How long an operator waits for a run's master to answer.
const MASTER_WAIT: Duration = Duration::from_millis(500);

/// Runs the operator's `command` against the server at `url`; returns the exit code.
pub(crate) fn operate(command: &str, url: &str, auth: NatsAuth, secret: Option<String>) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("conductor: cannot start a tokio runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run_command(command, url, auth, secret)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("conductor: {e}");
            1
        }
    }
}

async fn run_command(
    command: &str,
    url: &str,
    auth: NatsAuth,
    secret: Option<String>,
) -> Result<(), String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let secret = secret
        .map(|s| RunSecret::parse(&s).map_err(|e| format!("CONDUCTOR_RUN_SECRET: {e}")))
        .transpose()?;
    let (address, auth) = split_url(url, &auth);
    let client = connect(&address, &auth).await?;
    let server = Server {
        jetstream: super::jetstream_context(client.clone()),
        client,
        secret,
    };
    match words.as_slice() {
        ["list"] => server.list(&redact(url)).await,
        ["follow", run] => server.follow(run).await,
        ["remove", run] => server.remove(run, false).await,
        ["remove", run, "--force"] => server.remove(run, true).await,
        _ => Err(format!(
            "CONDUCTOR_RUNS={command:?}: say `list`, `follow <run>`, `remove <run>` or \
             `remove <run> --force`"
        )),
    }
}

struct Server {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    secret: Option<RunSecret>,
}

/// What the server and the run's master say of one run.
struct RunState {
    /// Messages of jobs not yet delivered, and delivered but not acked.
    queued: u64,
    held: u64,
    /// Results messages stored.
    results: u64,
    master: Master,
}

enum Master {
    None,
    /// A master answers, but without the secret its answer cannot be read.
    Sealed,
    Says(String),
}

impl Server {
    /// Every run on the server, one line each.
    async fn list(&self, shown_url: &str) -> Result<(), String> {
        let mut names = self.jetstream.stream_names();
        let mut runs = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|e| format!("cannot list the streams: {e}"))?;
            if let Some(run) = name
                .strip_prefix("CONDUCTOR_")
                .and_then(|n| n.strip_suffix("_JOBS"))
            {
                runs.push(run.to_string());
            }
        }
        runs.sort();
        println!("{} run(s) on {shown_url}", runs.len());
        if runs.is_empty() {
            return Ok(());
        }
        println!("run\tqueued\theld\tresults\tmaster");
        for run in runs {
            let state = self.state(&run).await?;
            println!(
                "{run}\t{}\t{}\t{}\t{}",
                state.queued,
                state.held,
                state.results,
                state.master.describe()
            );
        }
        println!("(queued and held: messages of jobs; results: messages of answers)");
        Ok(())
    }

    /// One line per second about `run`, until it is gone.
    async fn follow(&self, run: &str) -> Result<(), String> {
        loop {
            let Ok(state) = self.state(run).await else {
                println!("run `{run}` is gone (finished, or removed)");
                return Ok(());
            };
            println!(
                "queued {} held {} results {} | master: {}",
                state.queued,
                state.held,
                state.results,
                state.master.describe()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Removes the run's streams; refuses while a master answers for it, unless forced.
    async fn remove(&self, run: &str, force: bool) -> Result<(), String> {
        let state = self.state(run).await?;
        if !matches!(state.master, Master::None) && !force {
            return Err(format!(
                "run `{run}` has a master that answers: stop it, or add --force"
            ));
        }
        let names = RunNames::new(run).map_err(|e| e.to_string())?;
        let kept = super::lookups::stream_name(&names);
        if self.jetstream.delete_stream(&kept).await.is_ok() {
            println!("removed stream {kept}");
        }
        for stream in [names.jobs_stream(), names.results_stream()] {
            match self.jetstream.delete_stream(&stream).await {
                Ok(_) => println!("removed stream {stream}"),
                Err(e) => return Err(format!("cannot remove stream {stream}: {e}")),
            }
        }
        Ok(())
    }

    async fn state(&self, run: &str) -> Result<RunState, String> {
        let names = RunNames::new(run).map_err(|e| e.to_string())?;
        let mut jobs = self
            .jetstream
            .get_stream(names.jobs_stream())
            .await
            .map_err(|e| format!("no run `{run}` on this server: {e}"))?;
        let jobs_info = jobs.info().await.map_err(|e| e.to_string())?.clone();
        let consumer: Result<PullConsumer, _> = jobs.get_consumer(WORKERS_CONSUMER).await;
        let (queued, held) = match consumer {
            Ok(mut consumer) => match consumer.info().await {
                Ok(info) => (info.num_pending, info.num_ack_pending as u64),
                Err(_) => (jobs_info.state.messages, 0),
            },
            Err(_) => (jobs_info.state.messages, 0),
        };
        let results = match self.jetstream.get_stream(names.results_stream()).await {
            Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
            Err(_) => 0,
        };
        Ok(RunState {
            queued,
            held,
            results,
            master: self.ask_master(&names).await,
        })
    }

    /// Asks who answers for the run, as a master about to start would.
    async fn ask_master(&self, names: &RunNames) -> Master {
        let mut challenge = [0u8; 16];
        let _ = SystemRandom::new().fill(&mut challenge);
        let challenge: String = challenge.iter().map(|b| format!("{b:02x}")).collect();
        // Without the secret, the question cannot be sealed: any answer at all says a
        // master is there (it refuses the question, but it is subscribed).
        let key = self.secret.as_ref().map(|s| RunKey::new(s, names.run()));
        let question = match &key {
            Some(key) => key.seal(Purpose::OwnerQuestion, "", challenge.as_bytes()),
            None => bytes::Bytes::from_static(b"?"),
        };
        let asked = self.client.request(names.owner_subject(), question);
        match tokio::time::timeout(MASTER_WAIT, asked).await {
            Ok(Ok(answer)) => match key
                .as_ref()
                .and_then(|k| k.open(Purpose::OwnerAnswer, &challenge, &answer.payload))
            {
                Some(said) => Master::Says(String::from_utf8_lossy(&said).into_owned()),
                None => Master::Sealed,
            },
            // No responders: nobody holds the run.
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Master::None,
            // Someone listens, but does not answer a question it cannot read.
            _ => Master::Sealed,
        }
    }
}

impl Master {
    fn describe(&self) -> String {
        match self {
            Master::None => "none (finished, stopped early or abandoned)".into(),
            Master::Sealed => "running (its figures need the run's CONDUCTOR_RUN_SECRET)".into(),
            Master::Says(said) => said.clone(),
        }
    }
}
