//! The `ferry-sim` binary end to end: a study from scenario to figures and
//! plots, twice, byte for byte; a sweep; errors on bad input.

use std::path::Path;
use std::process::Command;

fn ferry_sim(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry-sim")).args(args).current_dir(dir).output().unwrap()
}

fn study(dir: &Path) {
    std::fs::write(dir.join("plan.txt"), ferry_sim::bench::generate_plan(12, 150, 7200, 5)).unwrap();
    std::fs::write(
        dir.join("study.toml"),
        "name = \"study\"\nseed = 3\nduration = 7200\nbuffer_size = 3_000_000\nlink_model = \"one\"\n\
         [router]\nname = \"prophet\"\n[contacts]\nplan = \"plan.txt\"\n\
         [messages]\ninterval = [20, 60]\nsize = [50_000, 500_000]\n",
    )
    .unwrap();
}

#[test]
fn a_study_gives_figures_and_plots_and_the_same_bytes_twice() {
    let dir = tempfile::tempdir().unwrap();
    study(dir.path());
    let mut outputs = vec![];
    for out in ["a", "b"] {
        let o = ferry_sim(&["run", "study.toml", "--out", out, "--quiet"], dir.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let files: Vec<Vec<u8>> = ["report.json", "report.csv", "delivery.svg", "latency_cdf.svg", "buffer.svg"]
            .iter()
            .map(|f| std::fs::read(dir.path().join(out).join(f)).unwrap())
            .collect();
        outputs.push(files);
    }
    assert_eq!(outputs[0], outputs[1]);
    let json: serde_json::Value = serde_json::from_slice(&outputs[0][0]).unwrap();
    assert_eq!(json["router"], "prophet");
    assert!(json["stats"]["created"].as_u64().unwrap() > 50);
    assert!(json["stats"]["delivered"].as_u64().unwrap() > 0);
    for svg in &outputs[0][2..] {
        let text = String::from_utf8_lossy(svg);
        assert!(text.starts_with("<svg") && text.contains("<polyline"), "{}", &text[..text.len().min(200)]);
    }
}

#[test]
fn a_sweep_compares_routers_over_seeds() {
    let dir = tempfile::tempdir().unwrap();
    study(dir.path());
    let o = ferry_sim(
        &[
            "sweep",
            "study.toml",
            "--out",
            "sw",
            "--routers",
            "epidemic,binary-spray-and-wait",
            "--copies",
            "2,8",
            "--seeds",
            "1-2",
            "--quiet",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(dir.path().join("sw/sweep.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 1 + 2 + 4, "{csv}");
    assert!(rows[0].starts_with("copies,scenario,router,seed"));
    assert!(rows[3].starts_with("2,study,binary-spray-and-wait,1,"), "{}", rows[3]);
    let svg = std::fs::read_to_string(dir.path().join("sw/comparison.svg")).unwrap();
    assert!(svg.contains("binary S&amp;W L=8") && svg.contains("epidemic"), "{svg}");
    // The same seed in a sweep gives the figures of a single run.
    let o =
        ferry_sim(&["run", "study.toml", "--router", "epidemic", "--seed", "2", "--out", "one", "--quiet"], dir.path());
    assert!(o.status.success());
    let single = std::fs::read_to_string(dir.path().join("one/report.csv")).unwrap();
    assert!(csv.contains(single.lines().nth(1).unwrap()), "{single}\n{csv}");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "duration = 10\n[contacts]\nplan = \"p.txt\"\n[messages]\ninterval = [1, 2]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("p.txt"), "a contact +0 +5 1 2 10\na contact +0 1 2 10\n").unwrap();
    let o = ferry_sim(&["run", "bad.toml", "--quiet"], dir.path());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("p.txt:2: expected a time"), "{err}");
    let o = ferry_sim(&["sweep", "bad.toml", "--out", "x", "--seeds", "9-1"], dir.path());
    assert!(!o.status.success());
}
