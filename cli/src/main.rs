//! The `meshca` command: the same pipeline the Lambda functions run, from a laptop or a CI job.
// The doc comments of the arguments are `--help`'s text, where `<NAME>` is the usual way to
// write a placeholder and a URL is an example, not a link: rustdoc would read them as HTML.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]
// Code that can fail at run time says so with an error; an `expect` is allowed where it
// cannot fail, with the reason. Tests unwrap freely.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod access;
mod crl;
mod fleet;
mod inspect;
mod issue;
mod ports;
mod report;
mod retire;
mod revoke;
mod rotate;
mod target;
mod vault;

const ABOUT: &str = "Give each Istio cluster its own intermediate CA, signed by one root.";

const LONG_ABOUT: &str = "\
Give each Istio cluster its own intermediate CA, signed by one root.

meshca generates a key and CSR for a cluster, has the CA sign a PathLen0 subordinate CA
certificate, escrows the result, and writes the `cacerts` bundle istiod reads: ca-cert.pem,
ca-key.pem, cert-chain.pem, root-cert.pem, and a Secret manifest for `kubectl apply`.

With no CA given, meshca uses the embedded local CA: a root kept under ./.meshca/ca,
created on first use. Nothing needs an AWS account.

Quick start:
  meshca issue --cluster demo          # writes out/demo/
  meshca inspect out/demo              # checks it against the bundle rules
  kubectl apply -f out/demo/cacerts.yaml

Each command's --help has examples, the environment variables it reads and its exit status:
0 success, 1 failure (the error printed once, on stderr), 2 a usage error. Every command and
flag: docs/cli.md.";

#[derive(Debug, Parser)]
#[command(name = "meshca", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Issue(Box<issue::IssueArgs>),
    Inspect(Box<inspect::InspectArgs>),
    RotateRoot(Box<rotate::RotateArgs>),
    Fleet(Box<fleet::FleetArgs>),
    Retire(Box<retire::RetireArgs>),
    Revoke(Box<revoke::RevokeArgs>),
    Access(Box<access::AccessArgs>),
    Crl(Box<crl::CrlArgs>),
}

/// Output format shared by the commands.
#[derive(Debug, Args, Clone, Copy)]
struct OutputArgs {
    /// Print one JSON document on stdout instead of text (for scripts and CI).
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meshca: error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Issue(args) => issue::run(*args).await,
            Command::Inspect(args) => inspect::run(*args).await,
            Command::RotateRoot(args) => rotate::run(*args).await,
            Command::Fleet(args) => fleet::run(*args).await,
            Command::Retire(args) => retire::run(*args).await,
            Command::Revoke(args) => revoke::run(*args).await,
            Command::Access(args) => access::run(*args),
            Command::Crl(args) => crl::run(*args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // Each cause once: an error that names its cause and also keeps it as its source
            // would otherwise print it twice.
            eprintln!("meshca: error: {}", meshca_core::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `meshca inspect … | head` should end quietly when the reader goes away, as other Unix tools
/// do, instead of panicking in `println!` on a broken pipe. Rust ignores SIGPIPE by default.
fn restore_sigpipe() {
    // SAFETY: resets one signal to its default disposition before any thread is started.
    #[allow(unsafe_code, reason = "libc::signal has no safe wrapper in std")]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Where `.meshca/` lives unless told otherwise.
fn default_state_dir() -> PathBuf {
    PathBuf::from(".meshca")
}
