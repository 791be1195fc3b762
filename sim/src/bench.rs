//! Generated scenarios of a given size, for scale figures (`ferry-sim bench`)
//! and for tests that need a random but reproducible topology.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ferry_core::contact::ContactPlan;
use ferry_core::router::RouterSpec;

use crate::engine::{Progress, Sim};
use crate::report::Report;
use crate::rng::Rng;
use crate::scenario::{ipn_number, GeneratedMessages, Generator, LinkModel, Messages, Scenario, DEFAULT_EPOCH};

/// The size of a generated scenario.
#[derive(Debug, Clone)]
pub struct BenchSize {
    pub nodes: u64,
    pub contacts: u64,
    pub messages: u64,
    /// Bytes per message.
    pub size: u64,
    /// Simulated seconds.
    pub duration_s: u64,
    /// Bytes per node (`None`: unlimited).
    pub buffer: Option<u64>,
    pub seed: u64,
}

/// An ION contact plan of `contacts` contacts between random pairs of
/// `nodes` nodes within `duration_s`, each 30 s to 5 min long at 250 kB/s
/// (the ONE's Bluetooth interface: 2 Mbit/s).
pub fn generate_plan(nodes: u64, contacts: u64, duration_s: u64, seed: u64) -> String {
    let mut rng = Rng::new(seed ^ 0x5EED_C0A7);
    let mut out = String::with_capacity(contacts as usize * 32);
    for _ in 0..contacts {
        let a = rng.between(1, nodes);
        let mut b = rng.between(1, nodes.saturating_sub(1).max(1));
        if b >= a {
            b += 1;
        }
        let len = rng.between(30, 300).min(duration_s.max(1));
        let start = rng.between(0, duration_s.saturating_sub(len));
        out.push_str(&format!("a contact +{start} +{} {a} {b} 250000\n", start + len));
    }
    out
}

/// The scenario for `size`: epidemic routing on a generated plan with the
/// ONE's link model, messages spread evenly over the first half of the run.
pub fn scenario(size: &BenchSize, router: RouterSpec) -> Scenario {
    let text = generate_plan(size.nodes, size.contacts, size.duration_s, size.seed);
    // The generated text is well-formed by construction.
    let plan = ContactPlan::parse_ion(&text, "generated", DEFAULT_EPOCH).unwrap_or_default();
    let duration_ms = size.duration_s * 1000;
    let spread = (duration_ms / 2).max(1);
    let interval = (spread / size.messages.max(1)).max(1);
    Scenario {
        name: format!("bench-{}n-{}c-{}m", size.nodes, size.contacts, size.messages),
        seed: size.seed,
        duration_ms,
        nodes: size.nodes,
        buffer_size: size.buffer,
        link_model: LinkModel::One,
        sample_ms: (duration_ms / 100).max(1),
        router,
        plan: Some(Arc::new(plan)),
        connections: vec![],
        trace_rate: 250_000,
        messages: Messages::Generator(Generator {
            interval_ms: (interval, interval),
            size: (size.size, size.size),
            hosts: (1, size.nodes),
            start_ms: 0,
            end_ms: interval.saturating_mul(size.messages).saturating_add(1),
        }),
        ttl_ms: duration_ms + 1,
        epoch: DEFAULT_EPOCH,
    }
}

/// What a bench run measured.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub report: Report,
    pub wall_s: f64,
    pub events_per_s: f64,
    /// Peak resident memory of this process (kB), where the OS tells it.
    pub peak_rss_kb: Option<u64>,
}

/// Runs `sc` and measures it.
pub fn run(sc: &Scenario, progress: Option<Progress<'_>>) -> BenchResult {
    let t = Instant::now();
    let report = Sim::new(sc).run(progress);
    let wall_s = t.elapsed().as_secs_f64();
    BenchResult { events_per_s: report.events as f64 / wall_s.max(1e-9), report, wall_s, peak_rss_kb: peak_rss_kb() }
}

/// VmHWM from /proc/self/status (Linux).
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A scenario as the ONE's external events (what its `StandardEventsReader`
/// and [`crate::trace::parse`] read): connections going up and down, and
/// message creations, in the order ferry-sim's engine handles them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneEvents {
    /// The events file.
    pub text: String,
    /// CONN up lines (connections of the ONE).
    pub connections: u64,
    /// Plan contacts that started while their pair was already connected
    /// (either way): the ONE ignores a CONN up for a connected pair and cuts
    /// the connection at the first CONN down, while ferry-sim keeps a pair
    /// up until its last overlapping contact ends, so they are merged here.
    pub merged: u64,
    /// C lines.
    pub messages: u64,
    /// Bytes per second of every link (the ONE's interfaces have one speed).
    pub rate: u64,
}

/// A count of milliseconds as decimal seconds (`2.16`, `300`): exact, and
/// what both readers take.
fn one_time(ms: u64) -> String {
    match ms % 1000 {
        0 => format!("{}", ms / 1000),
        r => format!("{}.{}", ms / 1000, format!("{r:03}").trim_end_matches('0')),
    }
}

/// `sc` as the ONE's external events. ONE host `h` is ferry-sim node `h + 1`
/// (as [`crate::trace`] reads them). Only the ONE's link model has a ONE
/// equivalent: a connection both ways, one transfer at a time.
///
/// The engine counts the contacts of a pair that are up (a contact each way,
/// or overlapping contacts, are one connection until the last ends); the ONE
/// does not count (an up for a connected pair does nothing, a down
/// disconnects). So the events are the engine's own: its link ups and downs
/// replayed in its order, (time, order of insertion), with a pair's count,
/// and a line written only when a pair connects or disconnects. At one
/// instant the engine handles the downs before the ups (plan contacts come
/// sorted by start), so contacts that merely touch stay two connections.
/// Messages come after the connectivity changes of the same instant, as in
/// the engine; messages after the end of the run are left out.
pub fn one_events(sc: &Scenario) -> Result<OneEvents, String> {
    if sc.link_model != LinkModel::One {
        return Err("only the ONE's link model (link_model = \"one\") can be exported to the ONE".into());
    }
    // (time ms, a, b, up), in the engine's insertion order.
    let mut changes: Vec<(u64, u64, u64, bool)> = vec![];
    let mut rates: Vec<u64> = vec![];
    if let Some(plan) = &sc.plan {
        for c in plan.contacts() {
            let (a, b) = (ipn_number(&c.from), ipn_number(&c.to));
            let start = c.start.saturating_sub(sc.epoch);
            let end = c.end.saturating_sub(sc.epoch);
            changes.push((start, a, b, true));
            changes.push((end, a, b, false));
            if c.owlt_ms != 0 {
                return Err(format!("contact {a}–{b} has a light time: the ONE's connections have none"));
            }
            if !rates.contains(&c.rate_bps) {
                rates.push(c.rate_bps);
            }
        }
    }
    if !sc.connections.is_empty() && !rates.contains(&sc.trace_rate) {
        rates.push(sc.trace_rate);
    }
    for c in &sc.connections {
        changes.push((c.time_ms, c.a, c.b, c.up));
    }
    let rate = match rates.as_slice() {
        [r] => *r,
        [] => return Err("the scenario has no contacts".into()),
        _ => return Err(format!("links of several rates ({rates:?}): a ONE interface has one speed")),
    };
    if i32::try_from(rate).is_err() {
        return Err(format!("rate {rate} B/s is more than the ONE's transmitSpeed (an int) holds"));
    }
    // A stable sort by time keeps insertion order within an instant.
    changes.sort_by_key(|c| c.0);
    let mut lines: Vec<(u64, String)> = Vec::with_capacity(changes.len());
    let (mut connections, mut merged) = (0, 0);
    // Pair (low, high) → contacts up, and the hosts as its up line named them.
    let mut up: HashMap<(u64, u64), (u32, u64, u64)> = HashMap::new();
    for (t, a, b, is_up) in changes {
        if t > sc.duration_ms {
            break;
        }
        let key = (a.min(b), a.max(b));
        if is_up {
            let e = up.entry(key).or_insert((0, a, b));
            e.0 += 1;
            if e.0 == 1 {
                connections += 1;
                lines.push((t, format!("{} CONN {} {} up", one_time(t), a - 1, b - 1)));
            } else {
                merged += 1;
            }
        } else if let Some(e) = up.get_mut(&key) {
            e.0 -= 1;
            if e.0 == 0 {
                let (_, a, b) = e;
                lines.push((t, format!("{} CONN {} {} down", one_time(t), *a - 1, *b - 1)));
                up.remove(&key);
            }
        }
    }
    let mut msgs: Vec<(u64, String)> = vec![];
    let mut line = |t: u64, id: &str, from: u64, to: u64, size: u64| -> Result<(), String> {
        if i32::try_from(size).is_err() {
            return Err(format!("message {id} of {size} bytes: the ONE's sizes are ints"));
        }
        msgs.push((t, format!("{} C {id} {} {} {size}", one_time(t), from - 1, to - 1)));
        Ok(())
    };
    match &sc.messages {
        Messages::Trace(list) => {
            for m in list.iter().filter(|m| m.time_ms <= sc.duration_ms) {
                line(m.time_ms, &m.id, m.from, m.to, m.size)?;
            }
        }
        Messages::Generator(g) => {
            let generated = GeneratedMessages::new(g, sc.seed).take_while(|m| m.0 <= sc.duration_ms);
            for (n, (t, from, to, size)) in generated.enumerate() {
                line(t, &format!("M{}", n + 1), from, to, size)?;
            }
        }
    }
    let messages = msgs.len() as u64;
    let mut text = String::with_capacity((lines.len() + msgs.len()) * 28);
    let _ = writeln!(text, "# {}: the ONE's external events, written by ferry-sim", sc.name);
    let _ = writeln!(text, "# ONE host h is ferry-sim node h+1; {rate} B/s links; times in s");
    // Merge by time; connectivity first within an instant.
    let mut m = msgs.into_iter().peekable();
    for (t, l) in lines {
        while let Some((_, ml)) = m.next_if(|(mt, _)| *mt < t) {
            text.push_str(&ml);
            text.push('\n');
        }
        text.push_str(&l);
        text.push('\n');
    }
    for (_, ml) in m {
        text.push_str(&ml);
        text.push('\n');
    }
    Ok(OneEvents { text, connections, merged, messages, rate })
}

/// The ONE settings for [`one_events`] of `sc`: `nodes` stationary hosts in
/// one group with the epidemic router, connections only from `events_file`
/// (`simulateConnections = false`, and an interface of range 0, which makes
/// none), and MessageStatsReport into `report_dir`. The ONE reads
/// `default_settings.txt` from its working folder first, so everything that
/// file sets and this scenario needs otherwise is set here. `update_interval`
/// (s) is the ONE's step: transfers end, and the next start, only at a step or
/// an external event.
pub fn one_settings(
    sc: &Scenario,
    ev: &OneEvents,
    events_file: &Path,
    report_dir: &Path,
    update_interval: f64,
) -> Result<String, String> {
    if !matches!(sc.router, RouterSpec::Epidemic) {
        return Err(format!("only the epidemic router is exported to the ONE, not {}", sc.router.name()));
    }
    let dur = sc.duration_ms as f64 / 1000.0;
    // The ONE's TTL is whole minutes: the first one past ferry-sim's.
    let ttl_min = sc.ttl_ms.div_ceil(60_000).max(1);
    // Unlimited: more than any run here holds (the ONE's default is 2^31 − 1 B).
    let buffer = sc.buffer_size.unwrap_or(1 << 50);
    let path = |p: &Path| p.display().to_string().replace('\\', "/");
    let mut s = String::new();
    let _ = write!(
        s,
        "\
# The ONE settings for ferry-sim's {name}, written by `ferry-sim bench --export-one`.
# Run from a ONE checkout: ./one.sh -b 1 <this file>
Scenario.name = {name}
Scenario.simulateConnections = false
Scenario.updateInterval = {update_interval}
Scenario.endTime = {dur}
Scenario.nrofHostGroups = 1

ferryInterface.type = SimpleBroadcastInterface
# Bytes per second, as ferry-sim's links.
ferryInterface.transmitSpeed = {rate}
# No range: only the external events connect hosts.
ferryInterface.transmitRange = 0

Group.groupID = n
Group1.groupID = n
Group.nrofHosts = {nodes}
Group.movementModel = StationaryMovement
Group.nodeLocation = 10, 10
Group.speed = 0, 0
Group.waitTime = 0, 0
Group.router = EpidemicRouter
Group.bufferSize = {buffer}
# Minutes: longer than the run, like ferry-sim's bench TTL.
Group.msgTtl = {ttl_min}
# Oldest first, as ferry-core routes (the ONE's default is random).
Group.sendQueue = FIFO
Group.nrofInterfaces = 1
Group.interface1 = ferryInterface

Events.nrof = 1
Events1.class = ExternalEventsQueue
Events1.filePath = {events}
Events1.nrofPreload = 5000

MovementModel.rngSeed = {seed}
MovementModel.worldSize = 100, 100
MovementModel.warmup = 0

Report.nrofReports = 1
Report.warmup = 0
Report.reportDir = {reports}
Report.report1 = MessageStatsReport

Optimization.cellSizeMult = 5
Optimization.randomizeUpdateOrder = false
",
        name = sc.name,
        rate = ev.rate,
        nodes = sc.nodes,
        seed = sc.seed,
        events = path(events_file),
        reports = path(report_dir),
    );
    Ok(s)
}

/// What [`export_one`] wrote.
#[derive(Debug, Clone)]
pub struct OneExport {
    pub events: OneEvents,
    pub events_file: PathBuf,
    pub settings_file: PathBuf,
    /// Where the ONE writes `<scenario name>_MessageStatsReport.txt`.
    pub report_dir: PathBuf,
}

/// Writes `events.txt`, `settings.txt` and an empty `reports/` into `dir`
/// (created if needed); the settings name them by absolute path, so the ONE
/// can run from its own folder.
pub fn export_one(sc: &Scenario, dir: &Path, update_interval: f64) -> Result<OneExport, String> {
    if !(update_interval.is_finite() && update_interval > 0.0) {
        return Err(format!("the ONE's update interval must be a positive number of seconds, not {update_interval}"));
    }
    let io = |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
    std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    let dir = dir.canonicalize().map_err(|e| io("resolve", dir, e))?;
    let events = one_events(sc)?;
    let events_file = dir.join("events.txt");
    let report_dir = dir.join("reports");
    let settings_file = dir.join("settings.txt");
    let settings = one_settings(sc, &events, &events_file, &report_dir, update_interval)?;
    std::fs::create_dir_all(&report_dir).map_err(|e| io("create", &report_dir, e))?;
    std::fs::write(&events_file, &events.text).map_err(|e| io("write", &events_file, e))?;
    std::fs::write(&settings_file, settings).map_err(|e| io("write", &settings_file, e))?;
    Ok(OneExport { events, events_file, settings_file, report_dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_plans_are_valid_and_reproducible() {
        let a = generate_plan(5, 50, 600, 3);
        assert_eq!(a, generate_plan(5, 50, 600, 3));
        assert_ne!(a, generate_plan(5, 50, 600, 4));
        let plan = ContactPlan::parse_ion(&a, "gen", 0).unwrap();
        assert_eq!(plan.len(), 50);
        assert!(plan.contacts().iter().all(|c| c.from != c.to && c.end <= 600_000));
    }

    /// A generated scenario small enough to have pairs with overlapping contacts.
    fn small() -> Scenario {
        let size = BenchSize {
            nodes: 6,
            contacts: 300,
            messages: 40,
            size: 50_000,
            duration_s: 3600,
            buffer: Some(1_000_000),
            seed: 9,
        };
        scenario(&size, RouterSpec::Epidemic)
    }

    #[test]
    fn one_export_reads_back_as_the_same_contacts_and_messages() {
        use crate::trace::MessageEvent;
        use std::collections::BTreeMap;

        let sc = small();
        let ev = one_events(&sc).unwrap();
        let t = crate::trace::parse(&ev.text, "export").unwrap();
        // The plan's contacts, as the periods each pair is connected: the
        // union of its contacts either way; contacts that only touch stay apart
        // (the engine takes the link down, then up again).
        let mut by_pair: BTreeMap<(u64, u64), Vec<(u64, u64)>> = BTreeMap::new();
        let plan = sc.plan.as_ref().unwrap();
        for c in plan.contacts() {
            let (a, b) = (ipn_number(&c.from), ipn_number(&c.to));
            by_pair.entry((a.min(b), a.max(b))).or_default().push((c.start - sc.epoch, c.end - sc.epoch));
        }
        let mut want = vec![];
        for (pair, mut periods) in by_pair {
            periods.sort_unstable();
            let mut cur = periods[0];
            for &(s, e) in &periods[1..] {
                if s < cur.1 {
                    cur.1 = cur.1.max(e);
                } else {
                    want.push((pair, cur.0, cur.1));
                    cur = (s, e);
                }
            }
            want.push((pair, cur.0, cur.1));
        }
        // What the trace says: every up of a pair closed by its down.
        let mut open: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        let mut got = vec![];
        for c in &t.connections {
            let pair = (c.a.min(c.b), c.a.max(c.b));
            if c.up {
                assert_eq!(open.insert(pair, c.time_ms), None, "{pair:?} up twice");
            } else {
                got.push((pair, open.remove(&pair).expect("down without up"), c.time_ms));
            }
        }
        assert!(open.is_empty());
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(ev.connections, want.len() as u64);
        assert_eq!(ev.merged + ev.connections, plan.len() as u64);
        assert!(ev.merged > 0, "the test scenario should overlap contacts of a pair");

        let Messages::Generator(g) = &sc.messages else { panic!("bench scenarios generate messages") };
        let want: Vec<MessageEvent> = GeneratedMessages::new(g, sc.seed)
            .enumerate()
            .map(|(n, (time_ms, from, to, size))| MessageEvent { time_ms, id: format!("M{}", n + 1), from, to, size })
            .collect();
        assert_eq!(want.len(), 40);
        assert_eq!(t.messages, want);
        assert_eq!(ev.messages, 40);
        assert_eq!(ev.rate, 250_000);
    }

    #[test]
    fn the_exported_trace_runs_like_the_plan_it_came_from() {
        let sc = small();
        let t = crate::trace::parse(&one_events(&sc).unwrap().text, "export").unwrap();
        let replay =
            Scenario { plan: None, connections: t.connections, messages: Messages::Trace(t.messages), ..sc.clone() };
        let (a, b) = (crate::engine::run(&sc, None), crate::engine::run(&replay, None));
        assert!(a.stats.delivered > 0 && a.stats.counts.aborted + a.stats.counts.dropped > 0);
        assert_eq!(a.stats, b.stats);
    }

    #[test]
    fn one_settings_and_times() {
        assert_eq!(one_time(2160), "2.16");
        assert_eq!(one_time(3000), "3");
        assert_eq!(one_time(5), "0.005");
        let sc = small();
        let ev = one_events(&sc).unwrap();
        let s = one_settings(&sc, &ev, Path::new("/x/events.txt"), Path::new("/x/reports"), 1.0).unwrap();
        for line in [
            "Scenario.updateInterval = 1\n",
            "Scenario.endTime = 3600\n",
            "Scenario.simulateConnections = false\n",
            "ferryInterface.transmitSpeed = 250000\n",
            "ferryInterface.transmitRange = 0\n",
            "Group.nrofHosts = 6\n",
            "Group.bufferSize = 1000000\n",
            "Group.msgTtl = 61\n",
            "Events1.filePath = /x/events.txt\n",
        ] {
            assert!(s.contains(line), "{line} missing in\n{s}");
        }
        let ion = Scenario { link_model: LinkModel::Ion, ..sc };
        assert!(one_events(&ion).is_err());
    }
}
