//! A storage device as the ring sees it.

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use serde::Serialize;
use std::net::IpAddr;

/// Device ids are stored in the partition table as `u16`; this value marks an unassigned slot.
pub const NO_DEVICE: u16 = u16::MAX;
/// The largest id a device can have (the table stores ids as `u16`).
pub const MAX_DEVICE_ID: u32 = NO_DEVICE as u32 - 1;

pub type DeviceId = u16;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    pub id: DeviceId,
    pub region: u32,
    pub zone: u32,
    pub ip: String,
    pub port: u16,
    /// The mount point name under the node's devices directory, e.g. `sdb1`.
    pub device: String,
    pub weight: f64,
    /// Free-form operator notes; never interpreted.
    pub meta: String,
}

impl Device {
    /// Checks every field an operator typed; the ring never holds a device that fails this.
    pub fn validate(&self) -> Result<()> {
        if u32::from(self.id) > MAX_DEVICE_ID {
            return Err(Error::InvalidDevice(format!(
                "id {} is above the maximum {MAX_DEVICE_ID}",
                self.id
            )));
        }
        validate_weight(self.weight)?;
        self.ip.parse::<IpAddr>().map_err(|_| {
            Error::InvalidDevice(format!("{:?} is not an IPv4 or IPv6 address", self.ip))
        })?;
        if self.port == 0 {
            return Err(Error::InvalidDevice("port 0 is not a valid port".into()));
        }
        let name_ok = !self.device.is_empty()
            && self.device.len() <= 64
            && self.device != "."
            && self.device != ".."
            && self
                .device
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(Error::InvalidDevice(format!(
                "device name {:?} must be 1-64 characters of letters, digits, '-', '_' or '.'",
                self.device
            )));
        }
        if self.meta.len() > 4096 {
            return Err(Error::InvalidDevice(
                "meta is longer than 4096 bytes".into(),
            ));
        }
        Ok(())
    }

    /// `ip:port`, the address of the storage node serving this device.
    pub fn node_addr(&self) -> String {
        match self.ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.port),
            _ => format!("{}:{}", self.ip, self.port),
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u16(self.id);
        w.u32(self.region);
        w.u32(self.zone);
        w.str16(&self.ip);
        w.u16(self.port);
        w.str16(&self.device);
        w.f64(self.weight);
        w.str32(&self.meta);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Device> {
        let dev = Device {
            id: r.u16("device id")?,
            region: r.u32("device region")?,
            zone: r.u32("device zone")?,
            ip: r.str16("device ip")?,
            port: r.u16("device port")?,
            device: r.str16("device name")?,
            weight: r.f64("device weight")?,
            meta: r.str32("device meta")?,
        };
        dev.validate()
            .map_err(|e| Error::Malformed(format!("device {}: {e}", dev.id)))?;
        Ok(dev)
    }
}

pub fn validate_weight(weight: f64) -> Result<()> {
    if weight.is_finite() && weight >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidWeight(weight))
    }
}

#[cfg(test)]
pub(crate) fn test_device(id: DeviceId, region: u32, zone: u32, host: u8, weight: f64) -> Device {
    Device {
        id,
        region,
        zone,
        ip: format!("10.{region}.{zone}.{host}"),
        port: 6200,
        device: format!("d{id}"),
        weight,
        meta: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_an_operator_can_mistype() {
        let good = test_device(1, 1, 1, 1, 100.0);
        good.validate().unwrap();
        let mut d = good.clone();
        d.weight = -1.0;
        assert!(matches!(d.validate(), Err(Error::InvalidWeight(_))));
        d.weight = f64::NAN;
        assert!(matches!(d.validate(), Err(Error::InvalidWeight(_))));
        let mut d = good.clone();
        d.ip = "not-an-ip".into();
        assert!(d.validate().is_err());
        for name in ["", "..", "a/b", "sd b", &"x".repeat(65)] {
            let mut d = good.clone();
            d.device = name.to_string();
            assert!(d.validate().is_err(), "{name:?}");
        }
        let mut d = good;
        d.ip = "::1".into();
        assert_eq!(d.node_addr(), "[::1]:6200");
    }
}
