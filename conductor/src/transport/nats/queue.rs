//! The master's side of the NATS mode, as a [`Transport`]: the run's streams and
//! consumer, the tasks that publish jobs and turn what workers publish into worker
//! events, and the worker processes of its own that join the run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::Client;
use bytes::Bytes;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::auth::{redact, split_url};
use super::control::{read_control, LastWords, Master as ControlMaster};
use super::joins::{answer_joins, join_token, secret, JoinTerms};
use super::link::NatsLink;
use super::lookups::{keep_lookups, stream_name as lookups_stream};
use super::owner::{claim_run, hold_run};
use super::publish::publish_jobs;
use super::results::read_results;
use super::seal::{frame_context, Purpose, RunKey, RunSecret, Sealer};
use super::{connect, RunNames, WORKERS_CONSUMER};
use crate::boot::env::{
    nats_auth_env, nats_auth_with_env, ENV_JOIN, ENV_NATS_URL, ENV_RUN_SECRET, ENV_WORKER_ID,
};
use crate::error::{Error, Kind};
use crate::settings::NatsAuth;
use crate::transport::link::WorkerLink;
use crate::transport::process::{self, watch_exit};
use crate::transport::{Context, Feed, Pending, StartedWorker, Transport, WorkerSpec};

/// Results kept by the server per run: far more than any run needs, but bounded.
const RESULTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A run's JetStream queue, as the master's [`Transport`].
pub(crate) struct NatsTransport {
    names: RunNames,
    url: String,
    /// The credentials the workers it starts connect with.
    worker_auth: NatsAuth,
    client: Client,
    jetstream: jetstream::Context,
    publish: mpsc::UnboundedSender<(Bytes, Vec<(u64, u32)>)>,
    /// Results the run had stored when this master started.
    stored_results: u64,
    /// The sequence of the last results message handed to the run loop.
    results_read: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
    master_id: String,
    /// Makes the join tokens of local workers unguessable from outside.
    secret: u64,
    /// The run's secret, for the workers it starts, and what seals its messages.
    run_secret: RunSecret,
    sealer: Arc<Sealer>,
    /// The goodbyes of its own worker processes, for their exits to wait on.
    last_words: LastWords,
    context: Context,
}

impl NatsTransport {
    /// Connects, creates (or finds) the run's streams and starts listening.
    pub async fn start(
        url: &str,
        run: &str,
        ack_wait: Duration,
        access: super::Access<'_>,
        context: Context,
    ) -> Result<NatsTransport, Error> {
        let names = RunNames::new(run)?;
        let given = access.secret.is_some();
        let run_secret = match access.secret {
            Some(secret) => RunSecret::parse(secret)
                .map_err(|e| Error::usage(format!("the secret of run `{run}`: {e}")))?,
            None => RunSecret::generate().map_err(Error::transport)?,
        };
        let sealer = Arc::new(Sealer::new(RunKey::new(&run_secret, run)));
        // The workers it starts get the same credentials (or their own), and the address
        // without them.
        let (url, auth) = split_url(url, &nats_auth_with_env(access.auth));
        let worker_auth = access.worker_auth.cloned().unwrap_or_else(|| auth.clone());
        let client = connect(&url, &auth).await.map_err(Error::transport)?;
        let jetstream = super::jetstream_context(client.clone());
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            Error::transport(format!(
                "run `{}` on {}: cannot {what}: {e}",
                names.run(),
                redact(&url)
            ))
        };
        // One master per run: two would both hand out and settle its jobs.
        let owner = claim_run(&client, &names, &sealer)
            .await
            .map_err(|e| fail("take the run", &e))?;
        // The stream keeps a check of the run's key: a master given another secret
        // could read nothing the run stored, and says so instead.
        let key_check = format!("conductor run, key check {}", sealer.key.check());
        let jobs = jetstream
            .get_or_create_stream(stream::Config {
                name: names.jobs_stream(),
                subjects: vec![names.jobs_subject()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                description: Some(key_check.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| fail("create the jobs stream", &e))?;
        if jobs.cached_info().config.description.as_deref() != Some(key_check.as_str()) {
            let hint = match given {
                true => "the secret given is not the one it started with",
                false => {
                    "it started with a secret of its own: give this master the same one \
                          (CONDUCTOR_RUN_SECRET or Conductor::run_secret)"
                }
            };
            return Err(fail("resume the run", &hint));
        }
        let consumer = jobs
            .get_or_create_consumer(
                WORKERS_CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(WORKERS_CONSUMER.to_string()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait,
                    // No limit: the worker that gets a job past its attempts reports the
                    // failure, and if that report is lost the job simply comes again.
                    max_deliver: -1,
                    max_ack_pending: (context.queue_window as i64).max(1024),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| fail("create the workers' consumer", &e))?;
        // A resumed run keeps the consumer it was created with: its leases are the
        // ones workers must renew.
        let ack_wait = consumer.cached_info().config.ack_wait;
        let results = jetstream
            .get_or_create_stream(stream::Config {
                name: names.results_stream(),
                subjects: vec![names.results_subject()],
                storage: stream::StorageType::File,
                max_age: RESULTS_MAX_AGE,
                ..Default::default()
            })
            .await
            .map_err(|e| fail("create the results stream", &e))?;
        // Results stored before this master started: a resumed run reads them first.
        let stored_results = results.cached_info().state.messages;

        let master_id = context.shared.id.clone();
        let secret = secret();
        let last_words = LastWords::default();
        if !given && !crate::boot::in_test_binary() {
            // The operator needs the secret to join workers from elsewhere, whatever
            // the logging (a test gives its runs their secret).
            let line = format!(
                "conductor: workers join run `{}` with CONDUCTOR_NATS_URL={} CONDUCTOR_JOIN={} {ENV_RUN_SECRET}={}",
                names.run(),
                redact(&url),
                names.run(),
                run_secret.to_hex()
            );
            crate::progress::above_bars(|| {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "{line}");
            });
        }
        // Lookup values set while the run ran, kept for a master that takes it over.
        let keeper = keep_lookups(
            jetstream.clone(),
            names.clone(),
            &context.shared.lookups,
            sealer.clone(),
        )
        .await
        .map_err(|e| fail("read the run's kept lookup values", &e))?;
        let (publish, jobs_rx) = mpsc::unbounded_channel();
        let results_read = Arc::new(AtomicU64::new(0));
        let control = client
            .subscribe(names.master_subject())
            .await
            .map_err(|e| fail("subscribe to its workers", &e))?;
        let joins = client
            .subscribe(names.join_subject())
            .await
            .map_err(|e| fail("listen for workers joining", &e))?;
        let tasks = vec![
            keeper,
            tokio::spawn(publish_jobs(
                jetstream.clone(),
                names.jobs_subject(),
                jobs_rx,
                sealer.clone(),
            )),
            tokio::spawn(read_results(
                jetstream.clone(),
                names.results_stream(),
                stored_results,
                results_read.clone(),
                context.inbox.clone(),
                sealer.clone(),
            )),
            tokio::spawn(read_control(
                control,
                ControlMaster {
                    client: client.clone(),
                    names: names.clone(),
                    master_id: master_id.clone(),
                    shared: context.shared.clone(),
                    to_master: context.inbox.clone(),
                    sealer: sealer.clone(),
                    last_words: last_words.clone(),
                },
            )),
            tokio::spawn(answer_joins(
                joins,
                client.clone(),
                context.inbox.clone(),
                JoinTerms {
                    secret,
                    window: context.worker_window as u32,
                    ack_wait_ms: ack_wait.as_millis() as u64,
                    max_attempts: context.max_attempts,
                },
                sealer.clone(),
            )),
            tokio::spawn(hold_run(
                owner,
                client.clone(),
                sealer.clone(),
                context.shared.clone(),
            )),
        ];
        Ok(NatsTransport {
            names,
            master_id,
            secret,
            run_secret,
            sealer,
            last_words,
            url,
            worker_auth,
            client,
            jetstream,
            publish,
            stored_results,
            results_read,
            tasks,
            context,
        })
    }

    /// Starts a worker process of ours that joins the run through the server, as a
    /// worker from elsewhere would, with the id reserved for it and the token that
    /// proves it.
    async fn start_process(&self, spec: WorkerSpec) -> Result<StartedWorker, Error> {
        let worker_id = spec.worker_id;
        let mut env = spec.env;
        env.extend(nats_auth_env(&self.worker_auth));
        env.extend([
            (ENV_RUN_SECRET.to_string(), self.run_secret.to_hex()),
            (ENV_NATS_URL.to_string(), self.url.clone()),
            (ENV_JOIN.to_string(), self.names.run().to_string()),
            (
                ENV_WORKER_ID.to_string(),
                format!("{worker_id}.{}", join_token(self.secret, worker_id)),
            ),
        ]);
        let spawned = process::spawn_worker(&spec.worker_type, &env, spec.output.as_ref(), false)
            .await
            .map_err(|e| Error::new(Kind::Spawn(e)))?;
        let kill = Arc::new(Notify::new());
        tokio::spawn(watch_exit(
            worker_id,
            spawned.child,
            // Its last frames (a goodbye, a crash's reason) travel the server.
            self.last_words.awaited(worker_id),
            kill.clone(),
            self.context.inbox.clone(),
        ));
        Ok(StartedWorker {
            link: self.link(worker_id),
            feed: Feed::RunQueue,
            lane: None,
            kill,
        })
    }

    /// The link to worker `worker_id` of this master.
    fn link(&self, worker_id: u64) -> WorkerLink {
        NatsLink::start(
            self.client.clone(),
            self.names.worker_subject(&self.master_id, worker_id),
            self.sealer.clone(),
            frame_context(&self.master_id, worker_id),
        )
    }

    /// Ends the run: once every job is accounted for, tells every worker of the run
    /// and removes its streams; a run that stopped early keeps them, to be resumed.
    async fn close_run(&self, complete: bool) {
        if complete {
            self.end_run().await;
            if let Err(e) = self.remove_run().await {
                if self.context.logging {
                    tracing::warn!(conductor = %self.master_id, worker_type = %self.context.shared.worker_type, "{e}");
                }
            }
        } else if self.context.logging {
            tracing::info!(
                conductor = %self.master_id,
                worker_type = %self.context.shared.worker_type,
                run = self.names.run(),
                "run stopped early: its streams are kept, to be resumed"
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
    }

    /// Removes the run's streams (and with them its consumer), and its kept lookup
    /// values if it has any.
    async fn remove_run(&self) -> Result<(), Error> {
        let _ = self
            .jetstream
            .delete_stream(lookups_stream(&self.names))
            .await;
        for name in [self.names.jobs_stream(), self.names.results_stream()] {
            if let Err(e) = self.jetstream.delete_stream(&name).await {
                return Err(Error::transport(format!(
                    "cannot delete stream {name}: {e}"
                )));
            }
        }
        Ok(())
    }

    /// Tells every worker of the run, joined to this master or an earlier one, that
    /// the run is over.
    async fn end_run(&self) {
        let stop = crate::wire::control_frame(&crate::wire::ToWorker::Stop);
        let context = frame_context(&self.master_id, "all");
        let sealed = self
            .sealer
            .seal_frame(Purpose::ToWorker, &context, &stop[4..]);
        let _ = self.client.publish(self.names.all_subject(), sealed).await;
    }

    /// The sequence of the last results message stored now, if the server says.
    async fn last_stored_results(&self) -> Option<u64> {
        let mut stream = self
            .jetstream
            .get_stream(self.names.results_stream())
            .await
            .ok()?;
        Some(stream.info().await.ok()?.state.last_sequence)
    }

    /// The largest message the server takes, less room for headers: the frame limit
    /// of a run in this mode.
    fn max_frame(&self) -> usize {
        self.client
            .server_info()
            .max_payload
            .saturating_sub(4096)
            .max(1024)
    }
}

impl Drop for NatsTransport {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Transport for NatsTransport {
    fn start_worker(&self, spec: WorkerSpec) -> Pending<'_, Result<StartedWorker, Error>> {
        Box::pin(self.start_process(spec))
    }

    fn link_to_joined(&self, worker_id: u64) -> Option<WorkerLink> {
        Some(self.link(worker_id))
    }

    fn hand_out(&self, jobs: Bytes, retried: Vec<(u64, u32)>) {
        let _ = self.publish.send((jobs, retried));
    }

    fn queue_window(&self) -> usize {
        self.context.queue_window
    }

    fn frame_limit(&self) -> usize {
        self.max_frame()
    }

    fn resumes_results(&self) -> bool {
        self.stored_results > 0
    }

    fn results_stored(&self) -> Pending<'_, Option<u64>> {
        Box::pin(self.last_stored_results())
    }

    fn results_read(&self) -> u64 {
        self.results_read.load(Ordering::SeqCst)
    }

    fn rejected(&self) -> u64 {
        self.sealer.rejections.count()
    }

    fn close(&self, complete: bool) -> Pending<'_, ()> {
        Box::pin(self.close_run(complete))
    }
}
