//! A test plugin built for a future major ABI version: hosts must refuse it
//! before calling anything.

use std::ffi::CStr;

use ferry_cla_abi::{Cla, Host, Verdict};

struct Future;

impl Cla for Future {
    const NAME: &'static CStr = c"future";
    fn create(_config: &str, _host: Host) -> Result<Self, String> {
        Ok(Future)
    }
    fn transmit(&self, _peer: u64, _transmit: u64, _bundle: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn verdict(&self, _token: u64, _verdict: Verdict) {}
    fn stop(&self) {}
}

#[no_mangle]
pub extern "C" fn ferry_cla_descriptor() -> *const ferry_cla_abi::FerryClaDescriptor {
    static DESCRIPTOR: ferry_cla_abi::FerryClaDescriptor = {
        let mut d = ferry_cla_abi::plugin::descriptor::<Future>();
        d.abi_major = ferry_cla_abi::ABI_MAJOR + 1;
        d.abi_minor = 0;
        d
    };
    &DESCRIPTOR
}
