//! `conformance --cases FILE`: replays Gateway API conformance cases against the waypoint and
//! prints a report; exits non-zero when any unit failed, when no unit passed, or when fewer
//! tests ran than the case file declares runnable.

use anyhow::Context;
use clap::Parser;
use conformance::cases::CaseFile;
use conformance::features::FeatureSet;
use conformance::report::{self, Implementation};
use conformance::run::{run_test, Settings};
use futures_util::StreamExt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(
    name = "conformance",
    about = "Replay Gateway API conformance cases against the waypoint"
)]
struct Cli {
    /// The case file (gwapi-conformance-cases/v1).
    #[arg(long, value_name = "FILE")]
    cases: PathBuf,
    /// Run only the tests with these names (repeatable, or comma-separated).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    only: Vec<String>,
    /// The upstream conformance folder holding base/, mesh/ and tests/.
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,
    /// Where to write the ConformanceReport YAML.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// The waypoint binary; by default it is built with cargo from this workspace.
    #[arg(long, value_name = "PATH")]
    waypoint: Option<PathBuf>,
    /// Replace the built-in supported feature list.
    #[arg(
        long,
        value_name = "A,B,C",
        value_delimiter = ',',
        conflicts_with = "all_features"
    )]
    supported_features: Option<Vec<String>>,
    /// Try every test, whatever features it needs.
    #[arg(long)]
    all_features: bool,
    /// How many tests run at once. Four keeps a full run near three minutes on two cores
    /// (about nine one at a time), since a test mostly waits on its streaks.
    #[arg(long, value_name = "N", default_value_t = 4)]
    jobs: usize,
}

fn workspace_root() -> PathBuf {
    // conformance/ sits in the workspace root; shared/ sits next to the clone (/work/shared).
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let root = workspace_root();
    let file = CaseFile::load(&cli.cases)?;
    let manifests = cli
        .manifests
        .unwrap_or_else(|| root.join("../shared/conformance/gateway-api"));
    anyhow::ensure!(
        manifests.join("base").is_dir() || manifests.join("mesh").is_dir(),
        "{} does not hold the upstream manifests (base/, mesh/, tests/); pass --manifests DIR",
        manifests.display()
    );
    let features = if cli.all_features {
        FeatureSet::All
    } else if let Some(list) = cli.supported_features {
        FeatureSet::Listed(list.into_iter().filter(|s| !s.is_empty()).collect())
    } else {
        FeatureSet::default()
    };
    let waypoint = match cli.waypoint {
        Some(p) => p,
        None => conformance::waypoint_proc::build_waypoint(&root)?,
    };
    let settings = Settings {
        waypoint,
        manifests,
        features: features.clone(),
        generated_secrets: file.generated_secrets.clone(),
    };

    let tests: Vec<_> = file
        .tests
        .iter()
        .filter(|t| cli.only.is_empty() || cli.only.iter().any(|o| o == &t.name))
        .collect();
    anyhow::ensure!(
        !tests.is_empty(),
        "no test in {} matches --only {:?}",
        cli.cases.display(),
        cli.only
    );
    // Tests run `jobs` at a time to keep the wall time down (most of it is waiting for
    // consistency streaks); each test's slot gives it its own loopback addresses and its own
    // waypoint processes, so concurrent tests cannot see each other. Results come back in
    // file order whatever finishes first, so the output is the same at any concurrency.
    let settings = &settings;
    let total = tests.len();
    let mut runs = futures_util::stream::iter(tests.iter().enumerate())
        .map(|(i, test)| async move {
            let slot = u8::try_from(i % 250).unwrap_or(0);
            run_test(settings, test, slot).await
        })
        .buffered(cli.jobs.max(1));
    let mut results = Vec::new();
    while let Some(result) = runs.next().await {
        eprintln!(
            "[{}/{total}] {}: {}: {} passed, {} failed, {} skipped",
            results.len() + 1,
            result.name,
            result.verdict(),
            result.passed(),
            result.failed(),
            result.skipped()
        );
        results.push(result);
    }

    let report_path = cli.report.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join("conformance-report.yaml")
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let yaml = report::conformance_report(
        &results,
        &features,
        &Implementation {
            version: env!("CARGO_PKG_VERSION").into(),
        },
        &report::rfc3339(now),
    );
    if let Some(dir) = report_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&report_path, yaml)
        .with_context(|| format!("cannot write {}", report_path.display()))?;
    println!(
        "{}",
        report::render(&results).trim_end_matches('\n').replace(
            "\ntests:",
            &format!("\nreport: {}\n\ntests:", report_path.display())
        )
    );
    let declared = tests
        .iter()
        .filter(|t| features.declared_runnable(t))
        .count();
    if let Some(why) = report::shortfall(&results, declared) {
        eprintln!("conformance: {why}");
        std::process::exit(1);
    }
    Ok(())
}
