//! `client`: keys, encrypted inference against a server, and a one-command demo.

use clap::{Parser, Subcommand};
use client::{
    load_pngs, load_test_set, run_compute, ClientConfig, ClientError, ConfigError, Images, KeySet,
};
use he_layers::plan::LayoutKind;
use he_layers::protocol::EncryptionParameters;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Encrypted inference client: your images and labels stay here; the server only ever sees
/// ciphertexts, and only this client holds the secret key.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How to reach a server beyond its address.
#[derive(clap::Args, Debug, Clone)]
struct ConnectArgs {
    /// Bearer token for a server started with --api-tokens.
    #[arg(long, env = "HE_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM certificate of a CA to trust for the server's certificate (a private CA, or the
    /// server's own self-signed one); overrides the config's "connection.ca_cert".
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Allow plain http to an address that is not loopback: keys, ciphertexts and the token
    /// then travel in the clear.
    #[arg(long)]
    insecure_http: bool,
}

impl ConnectArgs {
    fn apply(self, c: &mut client::Connection) {
        if self.token.is_some() {
            c.token = self.token;
        }
        if self.ca_cert.is_some() {
            c.ca_cert = self.ca_cert;
        }
        c.insecure_http |= self.insecure_http;
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate keys for encryption parameters: the secret key (file mode 0600), public key and
    /// relinearization key, one set per plaintext modulus. Refuses insecure parameters.
    Keygen {
        /// Parameters: a JSON file holding encryption parameters, or a client config (its
        /// "encryption_parameters" are used).
        #[arg(long)]
        params: PathBuf,
        /// Folder to write the keys to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Classify images encrypted: encrypt, send each encrypted segment to the server, decrypt,
    /// re-encrypt at the configured positions. Prints JSON to stdout, progress to stderr.
    Compute {
        /// Client config: address, net, encryption_parameters, quantization, layers,
        /// reencrypt_positions (PyCrCNN's m, p, sec, rencrypt_positions accepted).
        #[arg(long)]
        config: PathBuf,
        /// Keys from `client keygen`; default: fresh keys for this run only.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// An IDX image file (e.g. models/data/mnist-t10k-images-idx3-ubyte.gz) instead of PNGs.
        #[arg(long, conflicts_with = "images")]
        test_set: Option<PathBuf>,
        /// First image of the test set.
        #[arg(long, default_value_t = 0, requires = "test_set")]
        index: usize,
        /// Number of test-set images (one batch holds up to N).
        #[arg(long, default_value_t = 16, requires = "test_set")]
        count: usize,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        connect: ConnectArgs,
        /// PNG images (grayscale or RGB, as the model expects).
        images: Vec<PathBuf>,
    },
    /// List the server's models.
    Models {
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        address: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Start a server on a free loopback port with the shipped models, classify a model's 16
    /// sample images encrypted (mnist-tiny in the packed layout unless told otherwise), and
    /// print predicted against true labels and the time it took. Exits 0 only if every
    /// encrypted prediction equals the plaintext model's.
    Demo {
        /// The models folder.
        #[arg(long, default_value = "models")]
        models: PathBuf,
        /// The model to demonstrate (any folder of `--models` with samples and a client config).
        #[arg(long, default_value = "mnist-tiny")]
        net: String,
        /// The layout: `packed` (one image per row of a few ciphertexts; reads
        /// `configs/<net>.packed.client.json`) or `batch` (one image per slot; reads
        /// `configs/<net>.client.json`).
        #[arg(long, default_value = "packed")]
        layout: LayoutKind,
    },
}

fn main() -> ExitCode {
    he_layers::tune_allocator();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_params(path: &Path) -> Result<EncryptionParameters, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let json = |source| ConfigError::Json {
        path: path.to_path_buf(),
        source,
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(json)?;
    let inner = value.get("encryption_parameters").cloned().unwrap_or(value);
    Ok(serde_json::from_value(inner).map_err(json)?)
}

async fn run(command: Command) -> Result<ExitCode, ClientError> {
    match command {
        Command::Keygen { params, out } => {
            let p = read_params(&params)?;
            let keys = KeySet::generate(&p)?;
            keys.save(&out)?;
            for c in &keys.components {
                eprintln!(
                    "keys for N={}, t={}, log q={} ({}) written to {}/t{} (secret.key is mode 0600)",
                    c.params.degree(),
                    c.params.plain_modulus(),
                    c.params.total_modulus_bits(),
                    c.params.achieved_security(),
                    out.display(),
                    c.params.plain_modulus()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Compute {
            config,
            keys,
            test_set,
            index,
            count,
            quiet,
            connect,
            images,
        } => {
            let mut cfg = ClientConfig::load(&config)?;
            connect.apply(&mut cfg.connection);
            let mut key_set = match &keys {
                Some(dir) => KeySet::load(dir)?,
                None => KeySet::generate(&cfg.encryption_parameters)?,
            };
            let imgs = match test_set {
                Some(path) => load_test_set(&path, index, count)?,
                None => load_pngs(&images)?,
            };
            let report = run_compute(&cfg, &mut key_set, keys.as_deref(), &imgs, quiet).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|source| ClientError::Encode {
                    what: "the report",
                    source,
                })?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Models { address, connect } => {
            let mut connection = client::Connection::default();
            connect.apply(&mut connection);
            let api = client::Api::connect(&address, &connection)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&api.models().await?).map_err(|source| {
                    ClientError::Encode {
                        what: "the models",
                        source,
                    }
                })?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            models,
            net,
            layout,
        } => demo(&models, &net, layout).await,
    }
}

async fn demo(models: &Path, net: &str, layout: LayoutKind) -> Result<ExitCode, ClientError> {
    let started = std::time::Instant::now();
    let dir = models.join(net);
    if !dir.join("model.onnx").is_file() {
        return Err(ConfigError::DemoModelMissing {
            path: dir.join("model.onnx"),
        }
        .into());
    }
    // The embedded server, on a free loopback port.
    const LOOPBACK: &str = "127.0.0.1:0";
    let listen = |source| ClientError::Listen {
        address: LOOPBACK.into(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(LOOPBACK)
        .await
        .map_err(listen)?;
    let addr = listener.local_addr().map_err(listen)?;
    let server_cfg = server::ServerConfig {
        models_dir: models.to_path_buf(),
        ..Default::default()
    };
    tokio::spawn(async move {
        if let Err(e) = server::serve(listener, server_cfg).await {
            eprintln!("embedded server stopped: {e}");
        }
    });
    eprintln!("embedded server on http://{addr}");

    // The shipped client config, pointed at the embedded server.
    let file = match layout {
        LayoutKind::Batch => format!("{net}.client.json"),
        LayoutKind::Packed => format!("{net}.packed.client.json"),
    };
    let cfg_path = models.join("configs").join(file);
    let mut cfg = ClientConfig::load(&cfg_path)?;
    cfg.layout = Some(layout);
    cfg.address = format!("http://{addr}");
    cfg.model = Some(dir.join("model.onnx"));

    // The 16 samples, their labels, and the plaintext model's predictions.
    let meta_path = dir.join("samples/labels.json");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).map_err(|source| {
            ClientError::Io {
                path: meta_path.clone(),
                source,
            }
        })?)
        .map_err(|source| ConfigError::Json {
            path: meta_path.clone(),
            source,
        })?;
    let samples = meta["samples"].as_array().cloned().unwrap_or_default();
    let paths: Vec<PathBuf> = samples
        .iter()
        .filter_map(|s| s["file"].as_str().map(|f| dir.join("samples").join(f)))
        .collect();
    let mut imgs: Images = load_pngs(&paths)?;
    imgs.labels = samples
        .iter()
        .map(|s| s["label"].as_u64().map(|l| l as usize))
        .collect();
    let spec = net_builder::load_model(
        &dir.join("model.onnx"),
        &net_builder::PickleOptions::default(),
    )?;
    let plain = net_builder::eval::float_outputs(&spec, &imgs.tensor)?;

    eprintln!("generating keys…");
    let mut keys = KeySet::generate(&cfg.encryption_parameters)?;
    let report = run_compute(&cfg, &mut keys, None, &imgs, false).await?;

    println!(
        "{net}: {} sample images, encrypted end to end, {layout} layout (N={}, plaintext moduli {:?})",
        imgs.names.len(),
        keys.components[0].params.degree(),
        report.plain_moduli
    );
    println!();
    println!(
        "{:<8} {:>6} {:>10} {:>10}",
        "sample", "true", "plaintext", "encrypted"
    );
    let mut all_equal = true;
    for (j, r) in report.images.iter().enumerate() {
        let p = net_builder::eval::argmax(&plain[j]);
        let ok = p == r.label;
        all_equal &= ok;
        let name = Path::new(&r.source)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "{:<8} {:>6} {:>10} {:>10}  {}",
            name,
            r.true_label.map_or("?".into(), |l| l.to_string()),
            p,
            r.label,
            if ok { "ok" } else { "DIFFERS" }
        );
    }
    let correct = report
        .images
        .iter()
        .filter(|r| r.true_label == Some(r.label))
        .count();
    println!();
    for s in &report.segments {
        println!(
            "layers {}..{}: encrypt {:.0} ms, server {:.0} ms, round trip {:.0} ms, decrypt {:.0} ms; up {:.1} MB, down {:.1} MB; noise budget left {:?} bits",
            s.layers[0], s.layers[1], s.encrypt_ms, s.server_ms, s.round_trip_ms, s.decrypt_ms,
            s.bytes_up as f64 / 1e6, s.bytes_down as f64 / 1e6, s.noise_budget
        );
    }
    println!(
        "keys uploaded: {:.1} MB; compute {:.1} s, demo {:.1} s in all (server start, keys, import); {correct}/{} correct; encrypted predictions {} the plaintext model's",
        report.keys_upload_bytes as f64 / 1e6,
        report.total_ms / 1000.0,
        started.elapsed().as_secs_f64(),
        report.images.len(),
        if all_equal { "all equal" } else { "do NOT all equal" }
    );
    Ok(if all_equal {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
