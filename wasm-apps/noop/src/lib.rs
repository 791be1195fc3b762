//! The no-op app: takes every bundle and does nothing with it. It measures
//! what the app host costs per bundle (`ferry bench apps`).

wit_bindgen::generate!({ world: "app", path: "../wit" });

struct Noop;

impl Guest for Noop {
    fn start(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn on_bundle(_bundle: Incoming) -> Result<(), String> {
        Ok(())
    }

    fn on_tick(_now: u64) -> Result<(), String> {
        Ok(())
    }
}

export!(Noop);
