//! `hotline`: the 12348 hotline server's command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use hotline::app::{self, ServeOptions};
use hotline::config::Config;
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
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
        /// SIP listen address (UDP and TCP); overrides the config.
        #[arg(long)]
        sip_listen: Option<SocketAddr>,
        /// HTTP listen address; overrides the config.
        #[arg(long)]
        http_listen: Option<SocketAddr>,
        /// HTTPS listen address (the `[tls]` certificate, or a self-signed one); overrides
        /// the config.
        #[arg(long)]
        https_listen: Option<SocketAddr>,
        /// SIP over TLS listen address; overrides the config.
        #[arg(long)]
        sip_tls_listen: Option<SocketAddr>,
        /// Data directory (SQLite database); overrides the config.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Run as if the wall clock said this (tests and demos), e.g.
        /// 2026-02-14T10:00+08:00: working hours, calendar and deadlines follow it; the
        /// clock keeps ticking from there. Same as the HOTLINE_FAKE_NOW variable.
        #[arg(long, value_name = "RFC3339")]
        now: Option<String>,
    },
    /// Check a config file: prints every problem with its TOML path and line (exit 2).
    CheckConfig {
        #[arg(env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        path: PathBuf,
    },
    /// China working-day calendar: deadlines and day status (Asia/Shanghai).
    Calendar {
        /// Calendar data file; default: the config's `server.calendar`.
        #[arg(long, global = true)]
        calendar: Option<PathBuf>,
        /// The config naming the calendar when --calendar is not given.
        #[arg(
            long,
            env = "HOTLINE_CONFIG",
            default_value = "config/hotline.toml",
            global = true
        )]
        config: PathBuf,
        #[command(subcommand)]
        command: CalendarCommand,
    },
    /// Work-order ledger (TK-LEDGER).
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Work orders through a running server's HTTP API, with the bearer token of a
    /// `[[users]]` entry (`api_token`): create, list, get, events, and every command
    /// (`hotline order sign ID`, `hotline order return ID --reason …`).
    Order(Box<OrderArgs>),
    /// Console / API users in the config's `[[users]]`.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Back up the database into a new file: SQLite through its online backup API
    /// (safe while the server runs), PostgreSQL with `pg_dump --format=custom`.
    Backup {
        /// The backup file to create (never overwritten).
        dest: PathBuf,
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Restore a backup into the config's database, which must not exist yet (SQLite)
    /// or be empty (PostgreSQL: `createdb` it first); then migrate and verify the ledger.
    Restore {
        /// A file written by `hotline backup`.
        src: PathBuf,
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The directory of institutions and practitioners (W-6, W-8).
    Directory {
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Order commands: hotline order <COMMAND> ID [--field value]...
  submit, answer_directly --answer, explain_outside_remit --explanation,
  dispatch --units a,b [--category] [--area] [--urgency] [--contact-name] [--contact-phone],
  return_upward --reason, sign, return --reason, start,
  request_extension --extra-working-days N --reason, decide_extension --decision approve|reject [--reason],
  draft_reply --text, review --decision [--reason], reply --text, send_reviewed_reply,
  feed_back --note, record_callback --outcome satisfied|closed_on_judgement|redo|dissatisfied
  [--satisfaction] [--ground] [--target] [--note], remind, supervise --note, add_note --note,
  recompute_deadlines, withdraw --reason [--call-id] (the caller's confirming call; a supervisor
  may withdraw without), reveal_contact.
  --version N refuses the command if the order changed (409); --json '{...}' adds raw fields.
Errors print the API's code, message and field on stderr (exit 1; 2 for usage errors)."
)]
struct OrderArgs {
    /// The server (http:// or https://).
    #[arg(long, env = "HOTLINE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token of a [[users]] entry.
    #[arg(long, env = "HOTLINE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print a table, or the API's JSON.
    #[arg(long, value_enum, default_value_t = OutputArg::Table)]
    output: OutputArg,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    #[command(subcommand)]
    command: OrderCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputArg {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum OrderCommand {
    /// Create and submit an order (routed automatically when the business area is clear).
    Create {
        /// consultation | complaint | suggestion | case
        #[arg(long)]
        category: String,
        #[arg(long)]
        description: String,
        #[arg(long)]
        contact_name: Option<String>,
        #[arg(long)]
        contact_phone: Option<String>,
        /// normal | urgent
        #[arg(long)]
        urgency: Option<String>,
        /// legal_aid, lawyer, notary, judicial_appraisal, mediation, … or unknown
        #[arg(long)]
        business_area: Option<String>,
        /// City unit id (default: the user's city).
        #[arg(long)]
        city: Option<String>,
        /// phone | web | app | wechat | hotline_12345
        #[arg(long)]
        channel: Option<String>,
        /// When the demand was received (RFC 3339), for other channels.
        #[arg(long)]
        received_at: Option<String>,
        /// Units involved (comma-separated or repeated).
        #[arg(long = "unit", value_delimiter = ',')]
        units: Vec<String>,
        #[arg(long)]
        remarks: Option<String>,
        #[arg(long)]
        call_id: Option<String>,
        /// Sent as Idempotency-Key: resending the same create returns the same order.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List orders in the user's scope.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        city: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        business_area: Option<String>,
        #[arg(long)]
        urgency: Option<String>,
        /// Orders this unit had a part in.
        #[arg(long)]
        unit: Option<String>,
        /// true | false
        #[arg(long)]
        overdue: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        /// true | false
        #[arg(long)]
        special_flag: Option<String>,
        #[arg(long)]
        page: Option<String>,
        #[arg(long)]
        per_page: Option<String>,
        /// deadline | created
        #[arg(long)]
        sort: Option<String>,
    },
    /// One order (contact masked per role).
    Get { id: String },
    /// The order's ledger.
    Events { id: String },
    /// Any order command: `<command> ID [--field value]…`, e.g. `sign ID`,
    /// `dispatch ID --units a,b`, `return ID --reason …`, `request_extension ID
    /// --extra-working-days 5 --reason …`, `record_callback ID --outcome satisfied`.
    #[command(external_subcommand)]
    Run(Vec<String>),
}

#[derive(Debug, Subcommand)]
enum DirectoryCommand {
    /// Write N generated sample entries into the config's database (or DATABASE_URL):
    /// made-up institutions marked 示例 and made-up practitioners, numbers that cannot be
    /// dialled; each logged as `seeded`. For tests, the demo and the bench.
    Seed {
        /// How many entries (one in five an institution); at most 1,000,000.
        #[arg(long)]
        count: usize,
        /// The generator's seed (the same seed writes the same data).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user to the config (argon2 password hash); prints a generated password
    /// and, with --token, a new API token once (only their hashes are stored). Restart
    /// the server to use it.
    Add {
        /// agent | dispatcher | unit_handler | unit_head | reviewer | supervisor |
        /// callback_staff | province_admin (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// The user's unit (a city or any [[units]] id); default: the province.
        #[arg(long, alias = "unit")]
        city: Option<String>,
        /// User id (sign-in name); default: <role>-<unit>.
        #[arg(long)]
        id: Option<String>,
        /// Display name; default: the id.
        #[arg(long)]
        name: Option<String>,
        /// The softphone agent ([[agents]] id) this user works as.
        #[arg(long)]
        agent: Option<String>,
        /// Read the password from this environment variable instead of generating one.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
        /// Also create an API token for `hotline order` (HOTLINE_TOKEN).
        #[arg(long)]
        token: bool,
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Recompute the hash chain of every work-order event; report the first broken
    /// one (exit 1 when broken).
    Verify {
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "config/hotline.toml")]
        config: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum CalendarCommand {
    /// The deadline N working days after a moment (the day of receipt never counts).
    Deadline {
        /// RFC 3339 moment, e.g. 2025-09-30T16:00+08:00.
        #[arg(long)]
        from: String,
        #[arg(long)]
        working_days: u32,
    },
    /// Whether a date (YYYY-MM-DD) is a working day on China's calendar.
    IsWorkingDay { date: String },
    /// Validate the calendar file: prints every problem (exit 2 when there are any).
    Check,
    /// Add a year's holidays and make-up working days (State Council notice) to the
    /// calendar file, validated; a running server reloads the file within a scheduler
    /// interval and recomputes provisional deadlines. No rebuild, no restart.
    AddYear {
        /// The year, e.g. 2027.
        year: i32,
        /// Every date off, weekends inside holiday periods included: dates and ranges
        /// (2027-02-05..2027-02-11), separated by commas.
        #[arg(long, default_value = "")]
        holidays: String,
        /// Saturdays / Sundays worked (调休上班), separated by commas.
        #[arg(long, default_value = "")]
        workdays: String,
        /// The notice's address.
        #[arg(long)]
        notice: Option<String>,
        /// Read the dates from a TOML snippet with a `[years.YEAR]` table instead.
        #[arg(long, conflicts_with_all = ["holidays", "workdays"])]
        from: Option<PathBuf>,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_timer(hotline::logfmt::LogTimer)
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
            Ok(config) => {
                let mut config_ok = check_calendar(&config.server.calendar);
                match hotline::server::tls::check(&config) {
                    Ok(None) => {}
                    Ok(Some(note)) => println!("{note}"),
                    Err(e) => {
                        println!("tls: {}", hotline::logfmt::chain(&e));
                        config_ok = false;
                    }
                }
                for gap in hotline::api::orders::dispatch_gaps(&config) {
                    println!("warning: {gap}");
                }
                if let Some(gap) = hotline::orders::leaders::leader_gaps(&config) {
                    println!("warning: {gap}");
                }
                if let Some(gap) = hotline::server::tls::sdes_gaps(&config) {
                    println!("warning: {gap}");
                }
                if config_ok {
                    println!("{}: ok", path.display());
                    Ok(ExitCode::SUCCESS)
                } else {
                    Ok(ExitCode::from(2))
                }
            }
            Err(e) => {
                println!("{e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Calendar {
            calendar,
            config,
            command,
        } => {
            let calendar = match calendar {
                Some(calendar) => calendar,
                None => Config::load(&config)?.server.calendar,
            };
            if let CalendarCommand::Check = command {
                return Ok(if check_calendar(&calendar) {
                    println!("{}: ok", calendar.display());
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                });
            }
            if let CalendarCommand::AddYear {
                year,
                holidays,
                workdays,
                notice,
                from,
            } = command
            {
                return add_calendar_year(&calendar, year, &holidays, &workdays, notice, from);
            }
            let cal = hotline::calendar::Calendar::load(&calendar)
                .with_context(|| format!("load calendar {}", calendar.display()))?;
            let line = match command {
                CalendarCommand::Deadline { from, working_days } => {
                    hotline::calendar::cli::deadline_command(&cal, &from, working_days)?
                }
                CalendarCommand::IsWorkingDay { date } => {
                    hotline::calendar::cli::is_working_day_command(&cal, &date)?
                }
                CalendarCommand::Check | CalendarCommand::AddYear { .. } => String::new(),
            };
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledger {
            command: LedgerCommand::Verify { config, data_dir },
        } => {
            let config = load_config(&config, data_dir)?;
            let url = config.database_url(std::env::var("DATABASE_URL").ok());
            runtime()?.block_on(async {
                // Verifying must not create a database: an empty new one would pass.
                let store = Store::connect_existing(&url)
                    .await
                    .context("connect to database")?;
                store.migrate().await.context("migrate")?;
                let report = store.verify_ledger().await.context("read the ledger")?;
                match &report.broken_at {
                    None => {
                        if let Some(m) = store
                            .verify_projection()
                            .await
                            .context("read the projection")?
                        {
                            println!(
                                "ledger chain ok ({} events) but the projection is BROKEN for order {}: {}",
                                report.checked, m.order_id, m.problem
                            );
                            return Ok(ExitCode::FAILURE);
                        }
                        println!(
                            "ledger ok: {} events, projection matches, head {}",
                            report.checked, report.head_hash
                        );
                        Ok(ExitCode::SUCCESS)
                    }
                    Some(b) => {
                        println!(
                            "ledger BROKEN at event {} (order {}, seq {}): {}; {} events verified before it",
                            b.global_seq,
                            b.order_id.as_deref().unwrap_or("-"),
                            b.seq.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                            b.problem,
                            report.checked
                        );
                        Ok(ExitCode::FAILURE)
                    }
                }
            })
        }
        Command::Order(args) => Ok(order_command(*args)),
        Command::User {
            command:
                UserCommand::Add {
                    roles,
                    city,
                    id,
                    name,
                    agent,
                    password_env,
                    token,
                    config,
                },
        } => {
            let password = match password_env {
                Some(var) => Some(
                    std::env::var(&var).with_context(|| format!("environment variable {var}"))?,
                ),
                None => None,
            };
            let new = hotline::user_cli::NewUser {
                id,
                name,
                roles,
                unit: city,
                agent,
                password,
                token,
            };
            let added = hotline::user_cli::add_user(&config, &new)?;
            println!(
                "user {} ({}, unit {}) added to {}; restart the server to use it",
                added.id,
                added.roles.join(", "),
                added.unit,
                config.display()
            );
            if let Some(p) = &added.generated_password {
                println!("password: {p}");
            }
            if let Some(t) = &added.token {
                println!("api token: {t}");
                println!("  e.g. HOTLINE_TOKEN={t} hotline order list");
            }
            if added.generated_password.is_some() || added.token.is_some() {
                println!("(shown once: the config stores only their hashes)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup {
            dest,
            config,
            data_dir,
        } => {
            let config = load_config(&config, data_dir)?;
            let url = config.database_url(std::env::var("DATABASE_URL").ok());
            let report = runtime()?.block_on(hotline::store::ops::backup(&url, &dest))?;
            match report.orders {
                Some(n) => println!(
                    "backup written: {} ({} bytes, {n} work orders)",
                    report.path.display(),
                    report.bytes
                ),
                None => println!(
                    "backup written: {} ({} bytes, pg_dump custom format)",
                    report.path.display(),
                    report.bytes
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore {
            src,
            config,
            data_dir,
        } => {
            let config = load_config(&config, data_dir)?;
            let url = config.database_url(std::env::var("DATABASE_URL").ok());
            runtime()?.block_on(async {
                let report = hotline::store::ops::restore(&src, &url).await?;
                let store = Store::connect_existing(&url)
                    .await
                    .context("connect to database")?;
                let ledger = store.verify_ledger().await.context("read the ledger")?;
                let projection = store
                    .verify_projection()
                    .await
                    .context("read the projection")?;
                // Closed, so no -wal/-shm file of ours (maybe root's) stays behind.
                store.close().await;
                println!(
                    "restored {} into the configured database: {} work orders, migrated",
                    src.display(),
                    report.orders.unwrap_or_default()
                );
                match (&ledger.broken_at, projection) {
                    (None, None) => {
                        println!("ledger ok: {} events", ledger.checked);
                        Ok(ExitCode::SUCCESS)
                    }
                    (Some(b), _) => {
                        println!("ledger BROKEN at event {}: {}", b.global_seq, b.problem);
                        Ok(ExitCode::FAILURE)
                    }
                    (None, Some(m)) => {
                        println!("projection BROKEN for order {}: {}", m.order_id, m.problem);
                        Ok(ExitCode::FAILURE)
                    }
                }
            })
        }
        Command::Directory {
            command:
                DirectoryCommand::Seed {
                    count,
                    seed,
                    config,
                    data_dir,
                },
        } => {
            if count > 1_000_000 {
                eprintln!("--count: at most 1000000");
                return Ok(ExitCode::from(2));
            }
            let config = load_config(&config, data_dir)?;
            let url = config.database_url(std::env::var("DATABASE_URL").ok());
            runtime()?.block_on(async {
                let store = Store::connect(&url).await.context("connect to database")?;
                store.migrate().await.context("migrate")?;
                let now_ms = chrono::Utc::now().timestamp_millis();
                let ids = hotline::directory::seed::seed(&store, count, seed, "seed", now_ms)
                    .await
                    .context("seed the directory")?;
                match (ids.first(), ids.last()) {
                    (Some(a), Some(b)) => {
                        println!("{} directory entries written (ids {a}..={b})", ids.len())
                    }
                    _ => println!("0 directory entries written"),
                }
                Ok(ExitCode::SUCCESS)
            })
        }
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
            https_listen,
            sip_tls_listen,
            data_dir,
            now,
        } => {
            if let Some(now) = now {
                // SAFETY: still single-threaded here: the runtime and its threads are
                // created below, after this.
                unsafe { std::env::set_var("HOTLINE_FAKE_NOW", now) };
            }
            let mut config = load_config(&config, data_dir)?;
            hotline::logfmt::set_zone(config.log.timezone);
            if let Some(a) = sip_listen {
                config.server.sip_listen = a;
            }
            if let Some(a) = http_listen {
                config.server.http_listen = a;
            }
            if https_listen.is_some() {
                config.server.https_listen = https_listen;
            }
            if sip_tls_listen.is_some() {
                config.server.sip_tls_listen = sip_tls_listen;
            }
            let options = ServeOptions {
                database_url: config.database_url(std::env::var("DATABASE_URL").ok()),
                config,
            };
            runtime()?.block_on(app::serve(options))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `hotline calendar add-year`: validate, then replace the file atomically (a running
/// server sees the new modification time and reloads it). Exit 2 on invalid dates.
fn add_calendar_year(
    path: &std::path::Path,
    year: i32,
    holidays: &str,
    workdays: &str,
    notice: Option<String>,
    from: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use hotline::calendar::cli::{YearDates, add_year, parse_date_list, parse_year_snippet};
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read calendar {}", path.display()))?;
    let dates = match from {
        Some(snippet) => {
            let snippet_text = std::fs::read_to_string(&snippet)
                .with_context(|| format!("read {}", snippet.display()))?;
            parse_year_snippet(year, &snippet_text).map(|mut d| {
                if notice.is_some() {
                    d.notice = notice;
                }
                d
            })
        }
        None => parse_date_list("holidays", holidays).and_then(|h| {
            Ok(YearDates {
                holidays: h,
                workdays: parse_date_list("workdays", workdays)?,
                notice,
            })
        }),
    };
    let new_text = match dates.and_then(|d| add_year(&text, year, &d)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {year} not added: {e}", path.display());
            return Ok(ExitCode::from(2));
        }
    };
    // Write beside it, then rename over it: a reader never sees half a file.
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".new");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        std::io::Write::write_all(&mut file, new_text.as_bytes())?;
        file.sync_all()?;
    }
    // Keep the file's permissions (it may be readable by the service user only).
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&tmp, meta.permissions())?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replace {}", path.display()))?;
    println!(
        "{}: {year} added; a running server reloads it within its reminder interval",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Print every problem of a calendar file; true when there are none.
fn check_calendar(path: &std::path::Path) -> bool {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            println!("{}: cannot read: {e}", path.display());
            return false;
        }
    };
    let problems = hotline::calendar::Calendar::validate(&text);
    for p in &problems {
        println!("{}: {p}", path.display());
    }
    !problems
        .iter()
        .any(|p| p.severity == hotline::calendar::Severity::Error)
}

/// `hotline order …`: the answer on stdout; an error (the API's code, message and
/// field) on stderr with exit code 1 (2 for usage errors).
fn order_command(args: OrderArgs) -> ExitCode {
    use hotline::order_cli::{self, CliError, OrderClient, Output, Shape};
    let output = match args.output {
        OutputArg::Table => Output::Table,
        OutputArg::Json => Output::Json,
    };
    let run = async {
        let client = OrderClient::new(
            &args.url,
            args.token.as_deref(),
            std::time::Duration::from_secs(args.timeout.max(1)),
        )?;
        let answer = match args.command {
            OrderCommand::Create {
                category,
                description,
                contact_name,
                contact_phone,
                urgency,
                business_area,
                city,
                channel,
                received_at,
                units,
                remarks,
                call_id,
                idempotency_key,
            } => {
                let mut body = serde_json::json!({
                    "category": category,
                    "description": description,
                    "units": units,
                });
                for (key, value) in [
                    ("contact_name", contact_name),
                    ("contact_phone", contact_phone),
                    ("urgency", urgency),
                    ("business_area", business_area),
                    ("city", city),
                    ("channel", channel),
                    ("received_at", received_at),
                    ("remarks", remarks),
                    ("call_id", call_id),
                ] {
                    if let Some(value) = value {
                        body[key] = serde_json::Value::String(value);
                    }
                }
                (
                    client.create(&body, idempotency_key.as_deref()).await?,
                    Shape::Order,
                )
            }
            OrderCommand::List {
                state,
                city,
                category,
                business_area,
                urgency,
                unit,
                overdue,
                phone,
                special_flag,
                page,
                per_page,
                sort,
            } => {
                let query: Vec<(&str, String)> = [
                    ("state", state),
                    ("city", city),
                    ("category", category),
                    ("business_area", business_area),
                    ("urgency", urgency),
                    ("unit", unit),
                    ("overdue", overdue),
                    ("phone", phone),
                    ("special_flag", special_flag),
                    ("page", page),
                    ("per_page", per_page),
                    ("sort", sort),
                ]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
                (client.list(&query).await?, Shape::List)
            }
            OrderCommand::Get { id } => (client.get(&id).await?, Shape::Order),
            OrderCommand::Events { id } => (client.events(&id).await?, Shape::Events),
            OrderCommand::Run(raw) => {
                let call = order_cli::parse_command_call(&raw)?;
                let shape = if call.command == "reveal_contact" {
                    Shape::Other
                } else {
                    Shape::Order
                };
                (
                    client.command(&call.id, &call.command, &call.body).await?,
                    shape,
                )
            }
        };
        Ok::<_, CliError>(answer)
    };
    let result = match runtime() {
        Ok(rt) => rt.block_on(run),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok((value, shape)) => {
            print!("{}", order_cli::render(&value, shape, output));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}
