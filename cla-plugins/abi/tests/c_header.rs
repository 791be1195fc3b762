//! `include/ferry_cla.h` declares the ABI's types for C plugins: a C
//! compiler (the system's `cc`) reports their sizes and field offsets, which
//! must be those of the Rust definitions, and the example C plugin
//! (`examples/c/drop_plugin.c`) builds with warnings as errors and loads
//! through the host as a Ferry plugin.

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use ferry_cla_abi::{FerryClaDescriptor, FerryError, FerryHost, FerryPeerInfo};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cc(args: &[&str]) {
    let out = Command::new("cc").args(args).output().expect("a C compiler (cc)");
    assert!(out.status.success(), "cc {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_c_header_lays_out_the_types_as_rust_does() {
    let dir = tempfile::tempdir().unwrap();
    let fields: &[(&str, &str, usize)] = &[
        ("FerryError", "buf", offset_of!(FerryError, buf)),
        ("FerryError", "cap", offset_of!(FerryError, cap)),
        ("FerryError", "len", offset_of!(FerryError, len)),
        ("FerryPeerInfo", "node_id", offset_of!(FerryPeerInfo, node_id)),
        ("FerryPeerInfo", "node_id_len", offset_of!(FerryPeerInfo, node_id_len)),
        ("FerryPeerInfo", "address", offset_of!(FerryPeerInfo, address)),
        ("FerryPeerInfo", "address_len", offset_of!(FerryPeerInfo, address_len)),
        ("FerryPeerInfo", "mtu", offset_of!(FerryPeerInfo, mtu)),
        ("FerryPeerInfo", "rate_bps", offset_of!(FerryPeerInfo, rate_bps)),
        ("FerryHost", "size", offset_of!(FerryHost, size)),
        ("FerryHost", "ctx", offset_of!(FerryHost, ctx)),
        ("FerryHost", "node_id", offset_of!(FerryHost, node_id)),
        ("FerryHost", "node_id_len", offset_of!(FerryHost, node_id_len)),
        ("FerryHost", "bundle_received", offset_of!(FerryHost, bundle_received)),
        ("FerryHost", "peer_up", offset_of!(FerryHost, peer_up)),
        ("FerryHost", "peer_down", offset_of!(FerryHost, peer_down)),
        ("FerryHost", "transmit_done", offset_of!(FerryHost, transmit_done)),
        ("FerryHost", "log", offset_of!(FerryHost, log)),
        ("FerryClaDescriptor", "abi_major", offset_of!(FerryClaDescriptor, abi_major)),
        ("FerryClaDescriptor", "abi_minor", offset_of!(FerryClaDescriptor, abi_minor)),
        ("FerryClaDescriptor", "size", offset_of!(FerryClaDescriptor, size)),
        ("FerryClaDescriptor", "name", offset_of!(FerryClaDescriptor, name)),
        ("FerryClaDescriptor", "version", offset_of!(FerryClaDescriptor, version)),
        ("FerryClaDescriptor", "create", offset_of!(FerryClaDescriptor, create)),
        ("FerryClaDescriptor", "start", offset_of!(FerryClaDescriptor, start)),
        ("FerryClaDescriptor", "transmit", offset_of!(FerryClaDescriptor, transmit)),
        ("FerryClaDescriptor", "verdict", offset_of!(FerryClaDescriptor, verdict)),
        ("FerryClaDescriptor", "connect", offset_of!(FerryClaDescriptor, connect)),
        ("FerryClaDescriptor", "stop", offset_of!(FerryClaDescriptor, stop)),
        ("FerryClaDescriptor", "destroy", offset_of!(FerryClaDescriptor, destroy)),
        ("FerryClaDescriptor", "preparing", offset_of!(FerryClaDescriptor, preparing)),
    ];
    let sizes: &[(&str, usize)] = &[
        ("FerryError", size_of::<FerryError>()),
        ("FerryPeerInfo", size_of::<FerryPeerInfo>()),
        ("FerryHost", size_of::<FerryHost>()),
        ("FerryClaDescriptor", size_of::<FerryClaDescriptor>()),
    ];
    let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n#include \"ferry_cla.h\"\nint main(void) {\n");
    for (t, f, _) in fields {
        c.push_str(&format!("    printf(\"{t}.{f} %zu\\n\", offsetof({t}, {f}));\n"));
    }
    for (t, _) in sizes {
        c.push_str(&format!("    printf(\"sizeof {t} %zu\\n\", sizeof({t}));\n"));
    }
    c.push_str(
        "    printf(\"constants %d %d %d %d %d\\n\", FERRY_ABI_MAJOR, FERRY_ABI_MINOR, FERRY_ERR_FAILED, \
         FERRY_VERDICT_INVALID, FERRY_OUTCOME_FAILED);\n    return 0;\n}\n",
    );
    let src = dir.path().join("layout.c");
    let exe = dir.path().join("layout");
    std::fs::write(&src, c).unwrap();
    let include = crate_dir().join("include");
    cc(&["-Wall", "-Werror", "-I", include.to_str().unwrap(), "-o", exe.to_str().unwrap(), src.to_str().unwrap()]);
    let out = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();
    let mut want = String::new();
    for (t, f, off) in fields {
        want.push_str(&format!("{t}.{f} {off}\n"));
    }
    for (t, size) in sizes {
        want.push_str(&format!("sizeof {t} {size}\n"));
    }
    want.push_str(&format!(
        "constants {} {} {} {} {}\n",
        ferry_cla_abi::ABI_MAJOR,
        ferry_cla_abi::ABI_MINOR,
        ferry_cla_abi::FERRY_ERR_FAILED,
        ferry_cla_abi::VERDICT_INVALID,
        ferry_cla_abi::OUTCOME_FAILED
    ));
    assert_eq!(out, want);
}

#[test]
fn the_example_c_plugin_builds_cleanly_and_loads_as_a_ferry_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let so = dir.path().join("libferry_cla_drop.so");
    let include = crate_dir().join("include");
    let src = crate_dir().join("examples/c/drop_plugin.c");
    cc(&[
        "-shared",
        "-fPIC",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-I",
        include.to_str().unwrap(),
        "-o",
        so.to_str().unwrap(),
        src.to_str().unwrap(),
        "-lpthread",
    ]);
    let plugin = ferry_cla_abi::host::Plugin::load(&so).expect("loads as a Ferry plugin");
    assert_eq!((plugin.name(), plugin.version()), ("drop", "0.1.0"));
}
