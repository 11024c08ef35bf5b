#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| serl_fuzz::rouge(data));
