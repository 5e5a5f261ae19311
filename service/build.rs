//! Generates the gRPC messages, servers and clients from proto/rls.proto (the rate-limit protocol) and
//! proto/cache.proto (the response cache's fleet tier) with protox (a Rust protobuf compiler), so no
//! system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/rls.proto");
    println!("cargo:rerun-if-changed=proto/cache.proto");
    let fds = protox::compile(["proto/rls.proto", "proto/cache.proto"], ["proto"])?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
