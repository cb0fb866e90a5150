//! `softiommu inspect` as one JSON document (schema in docs/inspect.md):
//! the machine's devices and every context a server holds, with their
//! objects, HWPTs, IOASes and areas. A running server answers it to an
//! inspect hello ([`softiommu_proto::HELLO_INSPECT`]); the scenario inspect
//! builds the same document from its one context. [`render`] writes it in
//! `inspect`'s text layout.

use serde_json::{json, Value};
use softiommu_engine::inspect::{DeviceReport, Report};

/// The schema's version; a change that removes or retypes a key bumps it.
pub const SCHEMA: u64 = 1;

/// One context, as inspect shows it.
#[derive(Clone, Debug)]
pub struct ContextView {
    /// How the document names it (a server: the inode of the program's
    /// end of its socket).
    pub id: u64,
    /// The process that opened it, if known.
    pub pid: Option<i32>,
    /// `iommufd` or `vfio-container`.
    pub file: &'static str,
    /// What the engine reports for it.
    pub report: Report,
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// The document: `devices` as one context saw them (any context gives the
/// same machine), `contexts` in the order given.
pub fn snapshot(devices: &[DeviceReport], contexts: &[ContextView]) -> Value {
    let owner_context = |owner: u64| {
        contexts
            .iter()
            .find(|c| c.report.owner == owner)
            .map(|c| c.id)
    };
    let devices: Vec<Value> = devices
        .iter()
        .map(|d| {
            let holder = match (&d.kernel_driver, d.owner) {
                (Some(_), _) => "kernel",
                (None, Some(_)) => "user",
                (None, None) => "unbound",
            };
            json!({
                "name": d.name,
                "group": d.group,
                "group_size": d.group_size,
                "iommu": d.iommu,
                "holder": holder,
                "kernel_driver": d.kernel_driver,
                "owner_context": d.owner.and_then(owner_context),
                "domain": { "id": d.domain_id, "kind": d.domain_kind },
                "attached": d.attached,
            })
        })
        .collect();
    let contexts: Vec<Value> = contexts
        .iter()
        .map(|c| {
            let r = &c.report;
            json!({
                "id": c.id,
                "pid": c.pid,
                "file": c.file,
                "objects": r.objects.iter()
                    .map(|(id, ty)| json!({ "id": id, "type": ty }))
                    .collect::<Vec<_>>(),
                "hwpts": r.hwpts.iter()
                    .map(|(id, domain, ioas)| json!({ "id": id, "domain": domain, "ioas": ioas }))
                    .collect::<Vec<_>>(),
                "ioas": r.ioas.iter().map(|i| json!({
                    "id": i.id,
                    "iova_alignment": hex(i.iova_alignment),
                    "hwpts": i.hwpts,
                    "areas": i.areas.iter().map(|(start, last, prot, pinned)| json!({
                        "start": hex(*start),
                        "last": hex(*last),
                        "prot": prot,
                        "pinned_pages": pinned,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "schema": SCHEMA, "devices": devices, "contexts": contexts })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `doc` in inspect's text layout: a line per device (who holds it, the
/// domain it translates through and which context's HWPT and IOAS feed
/// it), then each context's objects, IOASes and areas.
pub fn render(doc: &Value) -> String {
    let empty = Vec::new();
    let contexts = doc["contexts"].as_array().unwrap_or(&empty);
    let context_name = |id: &Value| {
        let pid = contexts
            .iter()
            .find(|c| &c["id"] == id)
            .and_then(|c| c["pid"].as_i64());
        match pid {
            Some(pid) => format!("context {} (pid {pid})", text(id)),
            None => format!("context {}", text(id)),
        }
    };
    let mut out = String::from("devices:\n");
    for d in doc["devices"].as_array().unwrap_or(&empty) {
        let size = d["group_size"].as_u64().unwrap_or(0);
        let holder = match d["holder"].as_str() {
            Some("kernel") => format!("kernel driver {}", text(&d["kernel_driver"])),
            Some("user") if d["owner_context"].is_null() => "owned by a closing context".into(),
            Some("user") => format!("owned by {}", context_name(&d["owner_context"])),
            _ => "unbound".into(),
        };
        let domain_id = &d["domain"]["id"];
        let mut domain = format!("{} domain {}", text(&d["domain"]["kind"]), text(domain_id));
        for c in contexts {
            for h in c["hwpts"].as_array().unwrap_or(&empty) {
                if &h["domain"] == domain_id {
                    domain.push_str(&format!(
                        " = HWPT {} of {}, fed by IOAS {}",
                        text(&h["id"]),
                        context_name(&c["id"]),
                        text(&h["ioas"])
                    ));
                }
            }
        }
        out.push_str(&format!(
            "  {:<14} group {} ({} device{}) on {:<8} {:<26} {}{}\n",
            text(&d["name"]),
            text(&d["group"]),
            size,
            if size == 1 { "" } else { "s" },
            text(&d["iommu"]),
            holder,
            domain,
            if d["attached"] == true {
                "  [attached]"
            } else {
                ""
            }
        ));
    }
    for c in contexts {
        let objects: Vec<String> = c["objects"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|o| format!("{} {}", text(&o["type"]), text(&o["id"])))
            .collect();
        out.push_str(&format!(
            "{} on {}: {}\n",
            context_name(&c["id"]),
            text(&c["file"]),
            if objects.is_empty() {
                "no objects".to_owned()
            } else {
                objects.join(", ")
            }
        ));
        for i in c["ioas"].as_array().unwrap_or(&empty) {
            let hwpts: Vec<String> = i["hwpts"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(text)
                .collect();
            out.push_str(&format!(
                "  IOAS {}: alignment {}, mirrored by HWPT [{}]\n",
                text(&i["id"]),
                text(&i["iova_alignment"]),
                hwpts.join(", ")
            ));
            for a in i["areas"].as_array().unwrap_or(&empty) {
                out.push_str(&format!(
                    "    [{}, {}] {} {} pages pinned\n",
                    text(&a["start"]),
                    text(&a["last"]),
                    text(&a["prot"]),
                    text(&a["pinned_pages"])
                ));
            }
        }
    }
    out
}

/// The most bytes of JSON [`fetch`] accepts from a server.
const DOCUMENT_MAX: u64 = 1 << 30;

/// Asks the server listening at `socket` for its state (what
/// `softiommu inspect --live` shows).
pub fn fetch(socket: &std::path::Path) -> std::io::Result<Value> {
    use std::io::{Read, Write};
    use zerocopy::IntoBytes;
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    let hello = softiommu_proto::Hello {
        magic: softiommu_proto::MAGIC,
        kind: softiommu_proto::HELLO_INSPECT,
        ..Default::default()
    };
    stream.write_all(hello.as_bytes())?;
    let mut len = [0u8; 8];
    stream.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > DOCUMENT_MAX {
        return Err(std::io::Error::other("the server's answer is too long"));
    }
    let mut doc = vec![0u8; len as usize];
    stream.read_exact(&mut doc)?;
    serde_json::from_slice(&doc).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use softiommu_engine::api::Engine;
    use softiommu_engine::Prot;

    #[test]
    fn a_bound_and_attached_device_names_its_context_hwpt_and_ioas() {
        let engine = Engine::new();
        let mut fd = engine.open();
        let (dev, _) = fd.bind_device("0000:02:00.0").unwrap();
        let ioas = fd.alloc_ioas().unwrap();
        let memory = vec![0u8; 3 * 4096];
        let page = (memory.as_ptr() as u64).next_multiple_of(4096);
        let prot = Prot {
            read: true,
            write: true,
        };
        fd.map_user(ioas, page, 4096, Some(0x10_0000), prot)
            .unwrap();
        fd.attach(dev, ioas).unwrap();
        let report = fd.inspect();
        let view = ContextView {
            id: 7,
            pid: Some(42),
            file: "iommufd",
            report: report.clone(),
        };
        let doc = snapshot(&report.devices, &[view]);
        assert_eq!(doc["schema"], SCHEMA);
        let nic = doc["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "0000:02:00.0")
            .unwrap();
        assert_eq!(nic["holder"], "user");
        assert_eq!(nic["owner_context"], 7);
        assert_eq!(nic["domain"]["kind"], "paging");
        let area = &doc["contexts"][0]["ioas"][0]["areas"][0];
        assert_eq!(area["start"], "0x100000");
        assert_eq!(area["last"], "0x100fff");
        let text = render(&doc);
        assert!(text.contains("owned by context 7 (pid 42)"), "{text}");
        assert!(
            text.contains("of context 7 (pid 42), fed by IOAS 2"),
            "{text}"
        );
        assert!(
            text.contains("[0x100000, 0x100fff] rw 1 pages pinned"),
            "{text}"
        );
    }
}
