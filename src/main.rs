//! The `casino-router` binary: reads the configuration, then serves, migrates or seeds.

use std::net::SocketAddr;
use std::process::ExitCode;

use casino_router::config::{Config, DatabaseConfig, LogFormat};
use casino_router::{Listeners, seed, shutdown, simulate, store};
use tokio::net::TcpListener;

/// Exit code for a bad configuration or command line (EX_USAGE).
const EXIT_USAGE: u8 = 64;

const USAGE: &str =
    "usage: casino-router [serve|migrate|seed|simulate [--seeds N] [--scenario NAME | --scenario-file FILE]
                                                    [--thompson-exploration-rate R]]

  serve     run the router (the default)
  migrate   apply pending database migrations and exit
  seed      create 3 example offers if there are none, print their secrets, and exit
  simulate  run the routing strategies against synthetic traffic (30 days, 20,000 clicks a day) and
            print revenue as % of an oracle, per scenario; --seeds (default 20), --scenario NAME (one
            built-in scenario), --scenario-file FILE (your own offer mix, JSON: see the README),
            --thompson-exploration-rate R (thompson as THOMPSON_EXPLORATION_RATE=R routes, default 0)

Configuration comes from environment variables and a .env file; see .env.example.";

/// A listening socket could not be bound: names the address and the settings it came from, since
/// "Address already in use" alone does not say which of the router's ports is taken.
#[derive(Debug, thiserror::Error)]
#[error("could not listen on {addr} ({settings}): {error}")]
struct ListenError {
    addr: SocketAddr,
    /// The variables that chose `addr`.
    settings: &'static str,
    error: std::io::Error,
}

async fn listen(addr: SocketAddr, settings: &'static str) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|error| ListenError { addr, settings, error })
}

enum Command {
    Serve,
    Migrate,
    Seed,
}

/// `simulate [--seeds N] [--scenario NAME | --scenario-file FILE] [--thompson-exploration-rate R]`:
/// needs no configuration, prints a Markdown table; a bad argument or scenario file exits with 64.
fn simulate(args: &[String]) -> ExitCode {
    let mut seeds = 20;
    let mut thompson_exploration_rate = 0.0;
    let builtin = simulate::scenarios();
    let mut chosen: Option<simulate::Scenario> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--seeds", Some(n)) if n.parse::<u64>().is_ok_and(|n| n >= 2) => seeds = n.parse().unwrap_or(20),
            ("--thompson-exploration-rate", Some(rate))
                if rate.parse::<f64>().is_ok_and(|rate| (0.0..=1.0).contains(&rate)) =>
            {
                thompson_exploration_rate = rate.parse().unwrap_or(0.0);
            }
            ("--scenario", Some(name)) if chosen.is_none() && builtin.iter().any(|s| s.name == *name) => {
                chosen = builtin.iter().find(|s| s.name == *name).cloned();
            }
            ("--scenario-file", Some(path)) if chosen.is_none() => {
                match simulate::scenario::load(std::path::Path::new(path)) {
                    Ok(scenario) => chosen = Some(scenario),
                    Err(error) => {
                        eprintln!("{path}: {error}");
                        return ExitCode::from(EXIT_USAGE);
                    }
                }
            }
            _ => {
                let names: Vec<&str> = builtin.iter().map(|s| s.name.as_str()).collect();
                eprintln!(
                    "bad simulate arguments; --seeds takes a number >= 2, --scenario one of {names:?}, \
                     --scenario-file a JSON file (one of --scenario and --scenario-file), \
                     --thompson-exploration-rate a number from 0 to 1"
                );
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let scenarios = chosen.map_or(builtin, |scenario| vec![scenario]);
    for scenario in &scenarios {
        match scenario.description.as_str() {
            "" => println!("- {}", scenario.name),
            description => println!("- {}: {description}", scenario.name),
        }
    }
    println!();
    match simulate::report(&scenarios, seeds, thompson_exploration_rate, &mut std::io::stdout().lock(), |step| {
        eprintln!("{step}")
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("could not write the report: {error}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("simulate") {
        return simulate(&args[2..]);
    }
    let command = match args.get(1).map(String::as_str) {
        None | Some("serve") => Command::Serve,
        Some("migrate") => Command::Migrate,
        Some("seed") => Command::Seed,
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("unknown command {other:?}\n\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        eprintln!("could not read .env: {error}");
        return ExitCode::from(EXIT_USAGE);
    }
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(config.log_format);
    // The embedded store is for trying the router out: give it offers to route to on its first run.
    config.seed_if_empty = matches!(config.database, DatabaseConfig::Sqlite(_));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("could not start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: `info`, without the PostgreSQL driver's
/// notices), as text or as one JSON object per line.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn"));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

async fn execute(command: Command, config: Config) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve => {
            let http = listen(SocketAddr::new(config.host, config.port), "HOST, PORT").await?;
            let metrics = match config.metrics_addr {
                Some(addr) => Some(listen(addr, "METRICS_ADDR").await?),
                None => None,
            };
            casino_router::run(Listeners { http, metrics }, config, shutdown::signal()).await?;
        }
        Command::Migrate => {
            store::open(&config).await?;
            println!("migrations applied");
        }
        Command::Seed => {
            let store = store::open(&config).await?;
            let created = seed::seed_examples(store.as_ref()).await?;
            if created.is_empty() {
                println!("offers exist already; nothing seeded");
            }
            for offer in created {
                println!("created offer {} {:?} postback_secret={}", offer.id, offer.name, offer.postback_secret);
            }
        }
    }
    Ok(())
}
