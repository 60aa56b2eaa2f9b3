//! One prepared request per protocol: everything that can be built once (body,
//! headers, protobuf message) is, so that each sent request costs the client
//! a clone of shared bytes and the server sees identical work every time.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use fovea_core::Tensor;
use fovea_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use fovea_proto::inference::model_infer_request::InferInputTensor;
use fovea_proto::inference::{InferTensorContents, ModelInferRequest, ModelMetadataRequest};
use fovea_proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use fovea_proto::tensorflow::serving::{ModelSpec, PredictRequest};
use fovea_proto::{BytesTensor, TensorValue, binary, tf};
use fovea_vision::ImageLimits;
use serde_json::{Value, json};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

use super::{BenchArgs, Protocol};

/// Fixed multipart boundary: the body is built once, so it cannot vary per request.
const BOUNDARY: &str = "fovea-bench-boundary-7d1e4c";

/// A request ready to be sent any number of times.
#[derive(Clone)]
pub enum Target {
    /// An HTTP POST with a fixed body.
    Http {
        client: reqwest::Client,
        url: String,
        body: Bytes,
        headers: Vec<(&'static str, String)>,
    },
    /// KServe V2 ModelInfer.
    V2Grpc {
        client: GrpcInferenceServiceClient<Channel>,
        request: ModelInferRequest,
        authorization: Option<AsciiMetadataValue>,
    },
    /// TF Serving Predict.
    TfGrpc {
        client: PredictionServiceClient<Channel>,
        request: PredictRequest,
        authorization: Option<AsciiMetadataValue>,
    },
}

/// How one request ended: `Ok` or the status it failed with.
pub type Outcome = Result<(), String>;

impl Target {
    /// Builds the request `args` describe, asking the server for the model's
    /// input name where the protocol needs it and --input-name is absent.
    pub async fn prepare(args: &BenchArgs, concurrency: usize) -> anyhow::Result<Self> {
        let path = args.image.as_ref().context("--image FILE is needed")?;
        let image = Bytes::from(
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        );
        let tensor = if args.tensor {
            anyhow::ensure!(
                args.protocol != Protocol::Simple,
                "--tensor needs a tensor protocol (tf-rest, v2-rest, v2-grpc, tf-grpc); the simple API takes images"
            );
            Some(
                fovea_vision::preprocess(
                    &image,
                    &args.preset.preprocess(),
                    &ImageLimits::default(),
                )
                .context("preprocessing --image for --tensor")?,
            )
        } else {
            None
        };
        let base = args.url.trim_end_matches('/');
        let timeout = Duration::from_secs_f64(args.timeout_secs.max(0.001));
        let model = || {
            args.model
                .clone()
                .context("this protocol names the model in every request: pass --model NAME")
        };
        match args.protocol {
            Protocol::Simple | Protocol::TfRest | Protocol::V2Rest => {
                let client = crate::client::http_client()?
                    .pool_max_idle_per_host(concurrency)
                    .timeout(timeout)
                    .build()?;
                let (url, body, mut headers) = match args.protocol {
                    Protocol::Simple => simple_request(base, args, &image, path),
                    Protocol::TfRest => {
                        let instance = match &tensor {
                            Some(t) => item_json(t),
                            None => json!({ "b64": base64_encode(&image) }),
                        };
                        let body = serde_json::to_vec(&json!({ "instances": [instance] }))?;
                        (
                            format!("{base}/v1/models/{}:predict", model()?),
                            Bytes::from(body),
                            vec![("content-type", "application/json".to_string())],
                        )
                    }
                    _ => {
                        let model = model()?;
                        let input = rest_input_name(&client, base, &model, args).await?;
                        let value = input_value(tensor, image);
                        let encoded = binary::encode_infer_request(&[(input, value)], &[], true);
                        let mut headers =
                            vec![("content-type", "application/octet-stream".to_string())];
                        if let Some(n) = encoded.header_length {
                            headers.push((binary::HEADER_LENGTH_HEADER, n.to_string()));
                        }
                        (
                            format!("{base}/v2/models/{model}/infer"),
                            Bytes::from(encoded.body),
                            headers,
                        )
                    }
                };
                if let Some(authorization) = args.key.authorization() {
                    headers.push(("authorization", authorization));
                }
                Ok(Target::Http {
                    client,
                    url,
                    body,
                    headers,
                })
            }
            Protocol::V2Grpc | Protocol::TfGrpc => {
                let channel = tonic::transport::Endpoint::from_shared(base.to_string())?
                    .timeout(timeout)
                    .connect()
                    .await
                    .with_context(|| format!("connecting to the gRPC server at {base}"))?;
                let model = model()?;
                let authorization = args.key.grpc_authorization()?;
                let mut kserve = GrpcInferenceServiceClient::new(channel.clone())
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20);
                let input = match &args.input_name {
                    Some(name) => name.clone(),
                    None => kserve
                        .model_metadata(crate::client::grpc_request(
                            ModelMetadataRequest {
                                name: model.clone(),
                                version: String::new(),
                            },
                            &authorization,
                        ))
                        .await
                        .context(
                            "asking the server for the model's input name (or pass --input-name)",
                        )?
                        .into_inner()
                        .inputs
                        .first()
                        .map(|t| t.name.clone())
                        .context("the model metadata lists no input")?,
                };
                let value = input_value(tensor, image);
                if args.protocol == Protocol::V2Grpc {
                    let (datatype, contents) = match &value {
                        TensorValue::F32(t) => (
                            "FP32",
                            InferTensorContents {
                                fp32_contents: t.data().to_vec(),
                                ..Default::default()
                            },
                        ),
                        TensorValue::Bytes(b) => (
                            "BYTES",
                            InferTensorContents {
                                bytes_contents: b.items.clone(),
                                ..Default::default()
                            },
                        ),
                    };
                    let request = ModelInferRequest {
                        model_name: model,
                        inputs: vec![InferInputTensor {
                            name: input,
                            datatype: datatype.to_string(),
                            shape: value.shape().iter().map(|&d| d as i64).collect(),
                            contents: Some(contents),
                            ..Default::default()
                        }],
                        ..Default::default()
                    };
                    Ok(Target::V2Grpc {
                        client: kserve,
                        request,
                        authorization,
                    })
                } else {
                    let proto = match &value {
                        TensorValue::F32(t) => tf::tensor_to_proto(t),
                        TensorValue::Bytes(b) => tf::bytes_to_proto(b),
                    };
                    let request = PredictRequest {
                        model_spec: Some(ModelSpec {
                            name: model,
                            ..Default::default()
                        }),
                        inputs: [(input, proto)].into_iter().collect(),
                        ..Default::default()
                    };
                    let client = PredictionServiceClient::new(channel)
                        .max_decoding_message_size(64 << 20)
                        .max_encoding_message_size(64 << 20);
                    Ok(Target::TfGrpc {
                        client,
                        request,
                        authorization,
                    })
                }
            }
        }
    }

    /// Sends the request once and reads the whole answer.
    pub async fn send(&mut self) -> Outcome {
        match self {
            Target::Http {
                client,
                url,
                body,
                headers,
            } => {
                let mut request = client.post(url.as_str()).body(body.clone());
                for (name, value) in headers.iter() {
                    request = request.header(*name, value.as_str());
                }
                let response = request.send().await.map_err(transport_error)?;
                let status = response.status();
                // Reading the body to its end lets the connection be reused.
                response.bytes().await.map_err(transport_error)?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(status.as_u16().to_string())
                }
            }
            Target::V2Grpc {
                client,
                request,
                authorization,
            } => client
                .model_infer(crate::client::grpc_request(request.clone(), authorization))
                .await
                .map(drop)
                .map_err(|s| format!("grpc {:?}", s.code())),
            Target::TfGrpc {
                client,
                request,
                authorization,
            } => client
                .predict(crate::client::grpc_request(request.clone(), authorization))
                .await
                .map(drop)
                .map_err(|s| format!("grpc {:?}", s.code())),
        }
    }
}

fn transport_error(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect error".into()
    } else {
        "transport error".into()
    }
}

/// The simple API: the image as the raw body with its MIME type, or as
/// multipart field `image` (what the FastAPI baseline takes).
fn simple_request(
    base: &str,
    args: &BenchArgs,
    image: &Bytes,
    path: &std::path::Path,
) -> (String, Bytes, Vec<(&'static str, String)>) {
    let mime = fovea_vision::ImageFormat::detect(image)
        .map(|f| f.mime_type())
        .unwrap_or("application/octet-stream");
    let url = match &args.model {
        Some(m) => format!("{base}/api/v1/predict?model={m}"),
        None => format!("{base}/api/v1/predict"),
    };
    if !args.multipart {
        return (url, image.clone(), vec![("content-type", mime.to_string())]);
    }
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().replace('"', ""))
        .unwrap_or_else(|| "image".into());
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    (
        url,
        Bytes::from(body),
        vec![(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )],
    )
}

/// The image as a one-item BYTES tensor, or the preprocessed tensor.
fn input_value(tensor: Option<Tensor>, image: Bytes) -> TensorValue {
    match tensor {
        Some(t) => TensorValue::F32(t),
        None => TensorValue::Bytes(BytesTensor {
            shape: vec![1],
            items: vec![image],
        }),
    }
}

/// One item of a `[1, ...]` tensor as nested JSON arrays (TF row format).
fn item_json(tensor: &Tensor) -> Value {
    fn nest(shape: &[usize], data: &[f32]) -> Value {
        match shape {
            [] | [_] => json!(data),
            [first, rest @ ..] => {
                let step = data.len() / (*first).max(1);
                Value::Array(
                    (0..*first)
                        .map(|i| nest(rest, &data[i * step..(i + 1) * step]))
                        .collect(),
                )
            }
        }
    }
    nest(tensor.shape().get(1..).unwrap_or(&[]), tensor.data())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The model's input name from KServe V2 REST model metadata.
async fn rest_input_name(
    client: &reqwest::Client,
    base: &str,
    model: &str,
    args: &BenchArgs,
) -> anyhow::Result<String> {
    let url = format!("{base}/v2/models/{model}");
    let mut request = client.get(&url);
    if let Some(authorization) = args.key.authorization() {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await?;
    if !response.status().is_success() {
        bail!("GET {url} answered {}", response.status());
    }
    let metadata: Value = response.json().await?;
    metadata["inputs"][0]["name"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("GET {url} lists no input"))
}
