//! Check 7: the partition table of a raw image. Where an MBR signature
//! (0x55AA at 510) is present, each of the four entries must have a boot
//! flag of 0x00 or 0x80, and a protective GPT entry (type 0xEE) must start
//! at LBA 1. It must be the only entry, unless a GPT header (`EFI PART`)
//! really follows at LBA 1: then the other entries make a hybrid MBR, as
//! many real cloud and installer images have, and that is accepted.

use super::source::{le_u32, peek, Source};
use super::InspectError;

const FORMAT: &str = "raw";

pub fn check(src: &dyn Source) -> Result<(), InspectError> {
    let Some(mbr) = peek(src, 0, 512) else {
        return Ok(());
    };
    if mbr[510..512] != [0x55, 0xAA] {
        return Ok(());
    }
    let entries: Vec<&[u8]> = mbr[446..510].chunks_exact(16).collect();
    for e in &entries {
        if e[0] != 0x00 && e[0] != 0x80 {
            return Err(InspectError::unsafe_image(
                FORMAT,
                format!("has an MBR entry with an invalid boot flag {:#04x}", e[0]),
            ));
        }
    }
    let used: Vec<&&[u8]> = entries.iter().filter(|e| e[4] != 0).collect();
    if let Some(gpt) = used.iter().find(|e| e[4] == 0xEE) {
        let has_gpt_header = peek(src, 512, 8).is_some_and(|s| s == b"EFI PART");
        if used.len() != 1 && !has_gpt_header {
            return Err(InspectError::unsafe_image(
                FORMAT,
                "has a protective GPT entry beside other MBR entries",
            ));
        }
        if le_u32(gpt, 8) != 1 {
            return Err(InspectError::unsafe_image(
                FORMAT,
                "has a protective GPT entry that does not start at LBA 1",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(entries: &[(u8, u8, u32)]) -> Vec<u8> {
        let mut m = vec![0u8; 1024];
        m[510] = 0x55;
        m[511] = 0xAA;
        for (i, (boot, kind, start)) in entries.iter().enumerate() {
            let e = &mut m[446 + i * 16..462 + i * 16];
            e[0] = *boot;
            e[4] = *kind;
            e[8..12].copy_from_slice(&start.to_le_bytes());
        }
        m
    }

    #[test]
    fn valid_tables_pass() {
        assert!(check(&mbr(&[(0x80, 0x83, 2048), (0, 0x82, 4096)])).is_ok());
        assert!(check(&mbr(&[(0, 0xEE, 1)])).is_ok());
        // A hybrid MBR before a real GPT.
        let mut hybrid = mbr(&[(0, 0xEE, 1), (0x80, 0x0C, 2048)]);
        hybrid[512..520].copy_from_slice(b"EFI PART");
        assert!(check(&hybrid).is_ok());
        assert!(check(&vec![0u8; 100]).is_ok());
    }

    #[test]
    fn bad_boot_flags_and_protective_entries_are_refused() {
        assert!(check(&mbr(&[(0x12, 0x83, 2048)])).is_err());
        assert!(check(&mbr(&[(0, 0xEE, 1), (0, 0x83, 4096)])).is_err());
        assert!(check(&mbr(&[(0, 0xEE, 63)])).is_err());
    }
}
