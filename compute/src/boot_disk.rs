//! A tiny bootable disk for tests and benchmarks, generated rather than
//! downloaded: its boot sector writes a marker line to the first serial
//! port (COM1, I/O port 0x3F8) and powers the machine off (QEMU's ACPI
//! PM control port 0x604, then the older 0xB004). With it a test proves a
//! guest really booted from the disk the system built, by reading the
//! marker from the console.

/// The boot sector's code, 16-bit real mode, loaded at 0x7C00:
/// ```text
///        cli; cld; xor ax,ax; mov ds,ax
///        mov si, message; mov dx, 0x3F8
/// next:  lodsb; test al,al; jz off; out dx,al; jmp next
/// off:   mov dx,0x604; mov ax,0x2000; out dx,ax
///        mov dx,0xB004; out dx,ax
/// halt:  hlt; jmp halt
/// message: the marker, CR LF, NUL
/// ```
fn code(message_addr: u16) -> Vec<u8> {
    let [lo, hi] = message_addr.to_le_bytes();
    vec![
        0xFA, // cli
        0xFC, // cld
        0x31, 0xC0, // xor ax, ax
        0x8E, 0xD8, // mov ds, ax
        0xBE, lo, hi, // mov si, message
        0xBA, 0xF8, 0x03, // mov dx, 0x3F8
        // next (offset 12):
        0xAC, // lodsb
        0x84, 0xC0, // test al, al
        0x74, 0x03, // jz off (+3)
        0xEE, // out dx, al
        0xEB, 0xF8, // jmp next (-8)
        // off (offset 20):
        0xBA, 0x04, 0x06, // mov dx, 0x604
        0xB8, 0x00, 0x20, // mov ax, 0x2000
        0xEF, // out dx, ax
        0xBA, 0x04, 0xB0, // mov dx, 0xB004
        0xEF, // out dx, ax
        // halt (offset 31):
        0xF4, // hlt
        0xEB, 0xFD, // jmp halt (-3)
    ]
}

/// A raw disk of `size` bytes (at least 512) whose boot sector prints
/// `marker` on COM1 and powers off.
pub fn marker_disk(marker: &str, size: usize) -> Vec<u8> {
    disk(marker, size, true)
}

/// Like [`marker_disk`], but the guest stays up (halted) after printing,
/// for tests that stop, reboot or inspect a running instance.
pub fn idle_marker_disk(marker: &str, size: usize) -> Vec<u8> {
    disk(marker, size, false)
}

fn disk(marker: &str, size: usize, power_off: bool) -> Vec<u8> {
    assert!(size >= 512, "a disk holds at least its boot sector");
    let code_len = code(0).len();
    let message_addr = 0x7C00 + code_len as u16;
    let mut sector = code(message_addr);
    if !power_off {
        // Turn both `out dx, ax` of the power-off into `nop`s.
        sector[26] = 0x90;
        sector[30] = 0x90;
    }
    sector.extend_from_slice(marker.as_bytes());
    sector.extend_from_slice(b"\r\n\0");
    // The partition table (446..510) stays empty: a valid MBR for the
    // registry's partition-table check.
    assert!(
        sector.len() <= 446,
        "the marker is too long for the boot sector"
    );
    let mut disk = vec![0u8; size];
    disk[..sector.len()].copy_from_slice(&sector);
    disk[510] = 0x55;
    disk[511] = 0xAA;
    disk
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sector_is_laid_out_as_the_jumps_expect() {
        let c = code(0x7C00);
        assert_eq!(c[12], 0xAC, "lodsb at the loop's target");
        assert_eq!(c[20], 0xBA, "the power-off code where jz lands");
        assert_eq!(c[31], 0xF4, "hlt where the last jmp lands");
        // jz: 17 + 3 = 20; jmp next: 20 - 8 = 12; jmp halt: 34 - 3 = 31.
        assert_eq!((17 + 3, 20 - 8, 34 - 3), (20, 12, 31));
        let d = marker_disk("NUBO-TEST", 1 << 20);
        assert_eq!(d.len(), 1 << 20);
        assert_eq!(&d[510..512], &[0x55, 0xAA]);
        let msg_at = c.len();
        assert_eq!(&d[msg_at..msg_at + 9], b"NUBO-TEST");
        assert!(d[446..510].iter().all(|b| *b == 0));
        let idle = idle_marker_disk("NUBO-TEST", 4096);
        assert_eq!((idle[26], idle[30]), (0x90, 0x90));
        assert_eq!(
            (c[26], c[30]),
            (0xEF, 0xEF),
            "the power-off writes are where idle patches them"
        );
    }
}
