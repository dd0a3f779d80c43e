//! Start-up with many `[accounts.NAME]`, a measurement rather than a timed
//! test: how long loading the config (`${VAR}`s, `BOT__…` layering,
//! validation) and building the app (clients, sinks, the state) take for
//! 100, 1,000 and 10,000 accounts. Loading used to grow with the square of
//! the accounts (1,000 took seconds); it should now grow linearly.
//!
//! ```text
//! cargo run --release --example config_scale
//! COUNTS=100,1000 ROUNDS=5 cargo run --release --example config_scale
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use crayon_export_bot::app::App;
use crayon_export_bot::config::load_from_str;

/// The `[crayon]` defaults, one sink, and `n` accounts of two keys each.
fn config_text(n: usize, state: &Path) -> String {
    let mut text = format!(
        "[crayon]\nbase_url = \"https://api.crayon.com\"\nclient_id = \"id\"\n\
         client_secret = \"${{SECRET}}\"\n\n[watch]\nstate = \"{}\"\n\n\
         [sinks.audit]\nkind = \"webhook\"\nurl = \"https://hooks.example.com/x\"\n",
        state.display()
    );
    for i in 0..n {
        text.push_str(&format!(
            "\n[accounts.a{i:05}]\nusername = \"u{i}@example.com\"\npassword = \"${{PASSWORD}}\"\n"
        ));
    }
    text
}

/// (fastest load, fastest build) of `rounds` tries.
fn measure(n: usize, rounds: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let text = config_text(n, &dir.path().join("state.db"));
    let lookup = |name: &str| matches!(name, "SECRET" | "PASSWORD").then(|| "s3cret".to_string());
    let (mut load, mut build) = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        let started = Instant::now();
        let config = load_from_str(&text, &dir.path().join("bot.toml"), &lookup, Vec::new())
            .expect("a valid config");
        load = load.min(started.elapsed());
        assert_eq!(config.accounts.len(), n);
        let started = Instant::now();
        let app = App::build(config).expect("the app builds");
        build = build.min(started.elapsed());
        drop(app);
    }
    (load, build)
}

fn main() {
    let counts: Vec<usize> = std::env::var("COUNTS")
        .unwrap_or_else(|_| "100,1000,10000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("COUNTS: numbers, comma-separated"))
        .collect();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    println!("accounts   load config   build app   (fastest of {rounds})");
    for n in counts {
        let (load, build) = measure(n, rounds);
        println!(
            "{n:>8}   {:>9.1} ms   {:>7.1} ms",
            load.as_secs_f64() * 1e3,
            build.as_secs_f64() * 1e3
        );
    }
}
