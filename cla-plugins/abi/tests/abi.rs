//! The ABI through real `dlopen` of the example plugins (built by cargo as
//! shared libraries next to this test), and the same plugin in-process.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ferry_cla_abi::host::{ClaError, HostCallbacks, LoadError, Plugin};
use ferry_cla_abi::{Outcome, PeerUp, Verdict};

/// target/<profile>/examples/lib<name>.so, found from this test's own path
/// (target/<profile>/deps/abi-<hash>).
fn example_lib(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>");
    let path = profile_dir.join("examples").join(format!("lib{name}.so"));
    assert!(path.exists(), "{} not built (cargo test builds examples)", path.display());
    path
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
}

impl Recorder {
    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
    fn push(&self, e: String) {
        self.events.lock().unwrap().push(e);
    }
}

impl HostCallbacks for Recorder {
    fn bundle_received(&self, peer: u64, bundle: &[u8], token: u64) {
        self.push(format!("received peer={peer} token={token} {}", String::from_utf8_lossy(bundle)));
    }
    fn peer_up(&self, peer: u64, info: PeerUp<'_>) {
        self.push(format!(
            "up peer={peer} {} {} mtu={:?} rate={:?}",
            info.node_id, info.address, info.mtu, info.rate_bps
        ));
    }
    fn peer_down(&self, peer: u64) {
        self.push(format!("down peer={peer}"));
    }
    fn transmit_done(&self, transmit: u64, outcome: Outcome) {
        self.push(format!("done {transmit} {outcome:?}"));
    }
    fn log(&self, level: i32, msg: &str) {
        self.push(format!("log {level} {msg}"));
    }
}

#[test]
fn loads_runs_and_stops_a_plugin_through_dlopen() {
    let plugin = Plugin::load(&example_lib("loopback_plugin")).unwrap();
    assert_eq!(plugin.name(), "loopback");
    assert_eq!(plugin.version(), "1.0.0");
    let rec = Arc::new(Recorder::default());
    let inst = plugin.instantiate("dtn://host/", "", rec.clone()).unwrap();
    inst.start().unwrap();
    inst.transmit(7, 42, b"bundle bytes").unwrap();
    inst.verdict(42, Verdict::Accepted);
    let err = inst.transmit(8, 43, b"x").unwrap_err();
    assert!(matches!(&err, ClaError::Failed { message, .. } if message == "no peer 8"), "{err}");
    let err = inst.connect("tcp://127.0.0.1:1").unwrap_err();
    assert!(err.to_string().contains("cannot reach tcp://127.0.0.1:1"));
    drop(inst);
    assert_eq!(
        rec.events(),
        vec![
            "log 3 loopback started",
            "up peer=7 dtn://echo/ loop:// mtu=None rate=Some(1000)",
            "received peer=7 token=42 bundle bytes",
            "done 42 Sent",
            "log 4 verdict 42 Accepted",
            "down peer=7",
        ]
    );
}

#[test]
fn a_panicking_plugin_returns_an_error_and_the_host_goes_on() {
    let plugin = Plugin::load(&example_lib("loopback_plugin")).unwrap();
    let rec = Arc::new(Recorder::default());
    let err = plugin.instantiate("dtn://host/", "panic_in = \"create\"", rec.clone()).err().unwrap();
    assert!(
        matches!(&err, ClaError::Panicked { message, .. } if message.contains("asked to panic in create")),
        "{err}"
    );

    let inst = plugin.instantiate("dtn://host/", "panic_in = \"start\"", rec.clone()).unwrap();
    assert!(matches!(inst.start(), Err(ClaError::Panicked { .. })));

    let inst = plugin.instantiate("dtn://host/", "panic_in = \"transmit\"", rec.clone()).unwrap();
    assert!(matches!(inst.transmit(7, 1, b"x"), Err(ClaError::Panicked { .. })));
    inst.transmit(7, 2, b"y").unwrap_err(); // still callable, still an error, no abort

    let inst = plugin.instantiate("dtn://host/", "panic_in = \"verdict\"", rec.clone()).unwrap();
    inst.verdict(1, Verdict::Accepted); // swallowed at the boundary
    inst.stop();
    assert!(matches!(inst.transmit(7, 3, b"z"), Err(ClaError::Stopped { .. })));
}

#[test]
fn a_failing_create_says_why() {
    let plugin = Plugin::load(&example_lib("loopback_plugin")).unwrap();
    let err = plugin.instantiate("dtn://host/", "fail_create = true", Arc::new(Recorder::default())).err().unwrap();
    assert_eq!(err.to_string(), "loopback: fail_create is set");
    let err = plugin.instantiate("dtn://host/", "\u{0}bad", Arc::new(Recorder::default()));
    assert!(err.is_ok(), "NUL is valid UTF-8; the plugin decides what its config means");
}

#[test]
fn refuses_a_different_major_version_before_calling_it() {
    let path = example_lib("future_abi_plugin");
    let err = Plugin::load(&path).err().unwrap();
    assert!(matches!(err, LoadError::AbiMismatch { major: 2, ours: 1, .. }), "{err}");
    assert!(err.to_string().contains("plugin ABI 2.0, this ferryd speaks ABI 1.x"));
}

#[test]
fn refuses_missing_files_and_libraries_that_are_not_plugins() {
    let err = Plugin::load(std::path::Path::new("/nonexistent/libnothing.so")).err().unwrap();
    assert!(matches!(err, LoadError::Open { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/libnothing.so"));

    // A real shared library without our symbol.
    let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("libm");
    let err = Plugin::load(std::path::Path::new(libm)).err().unwrap();
    assert!(matches!(err, LoadError::NotAPlugin { .. }), "{err}");

    // A file that is not a library at all.
    let dir = std::env::temp_dir().join(format!("ferry-abi-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("libjunk.so");
    std::fs::write(&junk, b"this is not an ELF file").unwrap();
    let err = Plugin::load(&junk).err().unwrap();
    assert!(matches!(err, LoadError::Open { .. }), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A plugin compiled into the test itself: the same descriptor and calls,
/// without dlopen (how the simulator and unit tests use plugins).
struct InProcess {
    host: ferry_cla_abi::Host,
}

impl ferry_cla_abi::Cla for InProcess {
    const NAME: &'static std::ffi::CStr = c"inproc";
    fn create(config: &str, host: ferry_cla_abi::Host) -> Result<Self, String> {
        host.info(&format!("config: {config} on {}", host.node_id()));
        Ok(InProcess { host })
    }
    fn transmit(&self, peer: u64, transmit: u64, bundle: &[u8]) -> Result<(), String> {
        self.host.bundle_received(peer, bundle, transmit);
        self.host.transmit_done(transmit, Outcome::Refused);
        Ok(())
    }
    fn verdict(&self, _token: u64, _verdict: Verdict) {}
    fn stop(&self) {}
    fn preparing(&self, peer: u64, delta: i64) {
        self.host.info(&format!("preparing peer={peer} delta={delta}"));
    }
}

static IN_PROCESS: ferry_cla_abi::FerryClaDescriptor = ferry_cla_abi::plugin::descriptor::<InProcess>();

#[test]
fn in_process_plugins_use_the_same_path() {
    let plugin = Plugin::in_process(&IN_PROCESS).unwrap();
    assert_eq!(plugin.name(), "inproc");
    let rec = Arc::new(Recorder::default());
    let inst = plugin.instantiate("dtn://host/", "port = 1", rec.clone()).unwrap();
    inst.start().unwrap();
    inst.transmit(3, 9, b"b").unwrap();
    assert_eq!(
        rec.events(),
        vec!["log 3 config: port = 1 on dtn://host/", "received peer=3 token=9 b", "done 9 Refused"]
    );
    let err = inst.connect("x").unwrap_err();
    assert!(err.to_string().contains("does not connect"), "{err}");
}

/// The same plugin as built for ABI 1.0: its descriptor ends before
/// `preparing`, so the host must neither read nor call it.
static AS_ABI_1_0: ferry_cla_abi::FerryClaDescriptor = ferry_cla_abi::FerryClaDescriptor {
    abi_minor: 0,
    size: ferry_cla_abi::DESCRIPTOR_1_0_SIZE as u32,
    ..ferry_cla_abi::plugin::descriptor::<InProcess>()
};

#[test]
fn preparing_reaches_a_1_1_plugin_and_skips_a_1_0_one() {
    let rec = Arc::new(Recorder::default());
    let inst = Plugin::in_process(&IN_PROCESS).unwrap().instantiate("dtn://host/", "", rec.clone()).unwrap();
    inst.preparing(4, 3);
    inst.preparing(4, -1);
    assert_eq!(rec.events()[1..], ["log 3 preparing peer=4 delta=3", "log 3 preparing peer=4 delta=-1"]);

    let rec = Arc::new(Recorder::default());
    let old = Plugin::in_process(&AS_ABI_1_0).expect("a 1.0 descriptor still loads");
    let inst = old.instantiate("dtn://host/", "", rec.clone()).unwrap();
    inst.preparing(4, 3);
    inst.transmit(4, 1, b"x").unwrap();
    assert_eq!(rec.events()[1..], ["received peer=4 token=1 x", "done 1 Refused"]);

    let too_small = ferry_cla_abi::FerryClaDescriptor {
        size: ferry_cla_abi::DESCRIPTOR_1_0_SIZE as u32 - 8,
        ..ferry_cla_abi::plugin::descriptor::<InProcess>()
    };
    let err = Plugin::in_process(Box::leak(Box::new(too_small))).err().unwrap();
    assert!(matches!(err, LoadError::DescriptorTooSmall { .. }), "{err}");
}
