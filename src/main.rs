//! `hotline`: the 12348 hotline server's command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use hotline::config::Config;
use hotline::server::{self, ServeOptions};
use hotline::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "hotline",
    version,
    about = "12348 public legal-service hotline server"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (SIP on UDP+TCP, HTTP API).
    Serve {
        #[arg(long, default_value = "config/hotline.toml")]
        config: PathBuf,
        /// SIP listen address (UDP and TCP); overrides the config.
        #[arg(long)]
        sip_listen: Option<SocketAddr>,
        /// HTTP listen address; overrides the config.
        #[arg(long)]
        http_listen: Option<SocketAddr>,
        /// Data directory (SQLite database); overrides the config.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Check a config file: prints every problem with its TOML path and line (exit 2).
    CheckConfig {
        #[arg(default_value = "config/hotline.toml")]
        path: PathBuf,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, default_value = "config/hotline.toml")]
        config: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load_config(path: &std::path::Path, data_dir: Option<PathBuf>) -> Result<Config> {
    let mut config = Config::load(path)?;
    if let Some(dir) = data_dir {
        config.server.data_dir = dir;
    }
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::CheckConfig { path } => match Config::load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                println!("{e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Migrate { config, data_dir } => {
            let config = load_config(&config, data_dir)?;
            let url = config.database_url(std::env::var("DATABASE_URL").ok());
            runtime()?.block_on(async {
                let store = Store::connect(&url).await.context("connect to database")?;
                store.migrate().await.context("migrate")?;
                println!("migrations applied");
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Serve {
            config,
            sip_listen,
            http_listen,
            data_dir,
        } => {
            let mut config = load_config(&config, data_dir)?;
            if let Some(a) = sip_listen {
                config.server.sip_listen = a;
            }
            if let Some(a) = http_listen {
                config.server.http_listen = a;
            }
            let options = ServeOptions {
                database_url: config.database_url(std::env::var("DATABASE_URL").ok()),
                config,
            };
            runtime()?.block_on(server::serve(options))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}
