//! Compiles the .proto files with protox (no protoc needed) and writes the list of every
//! RPC method path, so the daemon's permission table can be checked to cover them all.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/vmgate/v1/common.proto",
    "proto/vmgate/v1/admin.proto",
    "proto/vmgate/v1/domain.proto",
    "proto/vmgate/v1/console.proto",
    "proto/vmgate/v1/users.proto",
    "proto/vmgate/v1/auth.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;

    let mut methods = String::from(
        "/// Every RPC method path the schema defines.\npub const ALL_METHODS: &[&str] = &[\n",
    );
    for file in &fds.file {
        for service in &file.service {
            for method in &service.method {
                methods.push_str(&format!(
                    "    \"/{}.{}/{}\",\n",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    methods.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("methods.rs"), methods)?;

    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
