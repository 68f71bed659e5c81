//! Frame decoding from hostile bytes: never panics, and a frame that decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secure_gossip::codec::{decode_framed, encode_frame};
use secure_gossip::Config;

fuzz_target!(|data: &[u8]| {
    let limits = Config::default().frame_limits();
    if let Ok(frame) = decode_framed(data, &limits) {
        let again = decode_framed(&encode_frame(&frame), &limits).expect("re-encoding decodes");
        assert_eq!(again, frame);
    }
});
