//! A local Lambda Runtime API: enough of it for a function binary to start, take events and
//! answer them. It notes when the first request arrives — the end of a cold start.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

#[derive(Default)]
struct State {
    first_request: Option<Instant>,
    /// Events waiting for the function's next GET.
    queue: std::collections::VecDeque<String>,
    next_id: u64,
}

/// The Lambda Runtime API, served in the test: a function binary polls it for events.
pub struct RuntimeStub {
    /// Where it listens (`AWS_LAMBDA_RUNTIME_API`).
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    ready: Arc<Notify>,
    responses: mpsc::UnboundedReceiver<(u64, bool, String)>,
}

impl RuntimeStub {
    /// Listens on a free local port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let ready = Arc::new(Notify::new());
        let (tx, rx) = mpsc::unbounded_channel();
        let (s, r) = (state.clone(), ready.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, r, tx) = (s.clone(), r.clone(), tx.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, s.clone(), r.clone(), tx.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(RuntimeStub {
            addr,
            state,
            ready,
            responses: rx,
        })
    }

    /// Starts the function binary `exe` against a new stub, with only `env` (and Lambda's own
    /// variables) in its environment; the process ends when the returned child is dropped.
    pub async fn spawn(
        exe: &str,
        env: &[(&str, &str)],
    ) -> std::io::Result<(Self, tokio::process::Child)> {
        let stub = Self::start().await?;
        let name = std::path::Path::new(exe)
            .file_name()
            .map_or("function".into(), |n| n.to_string_lossy().to_string());
        let child = tokio::process::Command::new(exe)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", stub.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "stream")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        Ok((stub, child))
    }

    /// When the function first asked for an event: its cold start's end.
    pub fn first_request(&self) -> Option<Instant> {
        self.state.lock().unwrap().first_request
    }

    /// Hands `event` to the function and waits for its answer: (ok, body).
    pub async fn invoke(&mut self, event: &str) -> (bool, String) {
        self.state
            .lock()
            .unwrap()
            .queue
            .push_back(event.to_string());
        self.ready.notify_waiters();
        self.ready.notify_one();
        let (_, ok, body) = self.responses.recv().await.expect("the stub keeps running");
        (ok, body)
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    ready: Arc<Notify>,
    tx: mpsc::UnboundedSender<(u64, bool, String)>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state
        .lock()
        .unwrap()
        .first_request
        .get_or_insert_with(Instant::now);
    let path = req.uri().path().to_string();
    if path.ends_with("/invocation/next") {
        loop {
            let next = {
                let mut st = state.lock().unwrap();
                st.queue.pop_front().map(|e| {
                    st.next_id += 1;
                    (st.next_id, e)
                })
            };
            if let Some((id, event)) = next {
                let deadline = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 900_000;
                return Ok(Response::builder()
                    .header("lambda-runtime-aws-request-id", id.to_string())
                    .header("lambda-runtime-deadline-ms", deadline.to_string())
                    .header(
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:eu-west-1:111122223333:function:bench",
                    )
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(event)))
                    .expect("static parts"));
            }
            ready.notified().await;
        }
    }
    let ok = path.ends_with("/response");
    let id = path
        .split('/')
        .rev()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let _ = tx.send((id, ok, String::from_utf8_lossy(&body).into_owned()));
    Ok(Response::builder()
        .status(202)
        .body(Full::new(Bytes::new()))
        .expect("static parts"))
}
