//! Key generation per algorithm: the one part of a reconcile whose cost the operator chooses
//! (MESHCA_KEY_ALGORITHM). `cargo bench -p meshca-bench --bench keygen`.

use criterion::{Criterion, criterion_group, criterion_main};
use meshca_core::{KeyAlgorithm, PrivateKey};

fn keygen(c: &mut Criterion) {
    let mut group = c.benchmark_group("keygen");
    for (name, alg, samples) in [
        ("ec-p256", KeyAlgorithm::EcP256, 100),
        ("ec-p384", KeyAlgorithm::EcP384, 100),
        ("rsa-2048", KeyAlgorithm::Rsa2048, 10),
        ("rsa-3072", KeyAlgorithm::Rsa3072, 10),
        ("rsa-4096", KeyAlgorithm::Rsa4096, 10),
    ] {
        group.sample_size(samples);
        group.bench_function(name, |b| b.iter(|| PrivateKey::generate(alg).expect("key")));
    }
    group.finish();
}

criterion_group!(benches, keygen);
criterion_main!(benches);
