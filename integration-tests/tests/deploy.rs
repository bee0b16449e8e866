//! The deployment files agree with the code: every supervised program stops
//! with a drain signal and waits longer than the service's own grace period
//! (btcpool's 3600 s drain under supervisor's 10 s kill is the bug avoided).

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

type Sections = BTreeMap<String, BTreeMap<String, String>>;

fn repo() -> PathBuf {
    sluice_testkit::repo_root()
}

/// supervisord's INI dialect: `[section]`, `key=value`, indented continuation lines, `;` comments.
fn parse_ini(text: &str) -> Sections {
    let mut sections = Sections::new();
    let (mut section, mut key) = (String::new(), String::new());
    for line in text.lines() {
        if line.trim_start().starts_with(';') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let value = sections.get_mut(&section).unwrap().get_mut(&key).unwrap();
            value.push(' ');
            value.push_str(line.trim());
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            sections.entry(section.clone()).or_default();
        } else {
            let (k, v) = line.split_once('=').unwrap();
            key = k.trim().to_owned();
            sections
                .get_mut(&section)
                .unwrap()
                .insert(key.clone(), v.trim().to_owned());
        }
    }
    sections
}

fn programs() -> Vec<(String, BTreeMap<String, String>)> {
    let dir = repo().join("deploy/supervisor/programs");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "conf") {
            for (name, keys) in parse_ini(&std::fs::read_to_string(&path).unwrap()) {
                if let Some(program) = name.strip_prefix("program:") {
                    out.push((program.to_owned(), keys));
                }
            }
        }
    }
    out
}

/// A service's drain grace: `[service].shutdown_grace_secs` of its example config (default 10).
fn grace_secs(program: &str) -> Option<u64> {
    let path = repo().join(format!("deploy/config/{program}.toml"));
    let text = std::fs::read_to_string(path).ok()?;
    let value: toml::Table = toml::from_str(&text).unwrap();
    Some(
        value
            .get("service")
            .and_then(|s| s.get("shutdown_grace_secs"))
            .and_then(toml::Value::as_integer)
            .map_or(10, |g| u64::try_from(g).unwrap()),
    )
}

#[test]
fn every_program_drains_before_supervisor_kills_it() {
    let programs = programs();
    assert!(
        programs.iter().any(|(n, _)| n == "kafka"),
        "the infra programs are found"
    );
    for (name, keys) in programs {
        let signal = keys.get("stopsignal").map(String::as_str);
        assert!(
            signal.is_some_and(|s| ["TERM", "INT"].contains(&s)),
            "{name}: stopsignal {signal:?}"
        );
        let wait: u64 = keys
            .get("stopwaitsecs")
            .unwrap_or_else(|| panic!("{name}: no stopwaitsecs"))
            .parse()
            .unwrap();
        if let Some(grace) = grace_secs(&name) {
            assert!(
                wait > grace,
                "{name}: stopwaitsecs {wait} must exceed shutdown_grace_secs {grace}"
            );
        }
        assert!(
            keys.contains_key("command") && keys.contains_key("stdout_logfile"),
            "{name}"
        );
        assert!(
            !keys["command"].contains("/work/") && !keys["command"].contains("/root/"),
            "{name}: absolute build path"
        );
    }
}

#[test]
fn supervisord_includes_the_programs_and_raises_the_fd_limit() {
    let text = std::fs::read_to_string(repo().join("deploy/supervisor/supervisord.conf")).unwrap();
    let conf = parse_ini(&text);
    assert_eq!(
        conf["include"]["files"],
        "%(ENV_SLUICE_HOME)s/deploy/supervisor/programs/*.conf"
    );
    assert_eq!(conf["supervisord"]["minfds"], "%(ENV_SLUICE_MINFDS)s");
    let lib = std::fs::read_to_string(repo().join("install/lib.sh")).unwrap();
    assert!(
        lib.contains("export SLUICE_MINFDS="),
        "install/lib.sh sets the limit supervisord asks for"
    );
}

/// supervisord starts programs in ascending priority and stops them in
/// descending: the servers the services write to must outlive them, so that
/// a draining sserver's last shares still reach the broker.
#[test]
fn the_infrastructure_starts_first_and_stops_last() {
    let priority = |keys: &BTreeMap<String, String>| -> u32 {
        keys.get("priority").map_or(999, |p| p.parse().unwrap())
    };
    let programs = programs();
    let infra = ["zookeeper", "mariadb", "kafka"];
    let latest_infra = programs
        .iter()
        .filter(|(n, _)| infra.contains(&n.as_str()))
        .map(|(_, k)| priority(k))
        .max()
        .unwrap();
    for (name, keys) in programs
        .iter()
        .filter(|(n, _)| !infra.contains(&n.as_str()))
    {
        assert!(
            priority(keys) > latest_infra,
            "{name} must start after and stop before the infrastructure"
        );
    }
}
