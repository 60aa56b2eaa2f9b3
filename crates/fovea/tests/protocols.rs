//! TF Serving and KServe V2 over real loopback sockets, in-process: REST
//! through the HTTP router, gRPC through fovea-proto's generated clients,
//! each against the same engine as /api/v1/predict.

mod common;

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use common::{Reply, TestServer, png};
use fovea_core::Tensor;
use fovea_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use fovea_proto::inference::model_infer_request::InferInputTensor;
use fovea_proto::inference::{
    InferTensorContents, ModelInferRequest, ModelMetadataRequest, ServerLiveRequest,
};
use fovea_proto::tensorflow::serving::model_service_client::ModelServiceClient;
use fovea_proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use fovea_proto::tensorflow::serving::{GetModelStatusRequest, ModelSpec, PredictRequest};
use fovea_proto::tensorflow::{DataType, TensorProto};
use fovea_proto::{BytesTensor, TensorValue, binary, tf};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

const CLASSES: usize = 10;

fn input_tensor(batch: usize) -> Tensor {
    let n = batch * 3 * 32 * 32;
    let data = (0..n)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    Tensor::new(vec![batch, 3, 32, 32], data).unwrap()
}

fn nested(t: &Tensor) -> Value {
    let items: Vec<Value> = (0..t.batch_size())
        .map(|i| {
            let item = t.item(i).unwrap();
            json!(
                item.chunks(32 * 32)
                    .map(|c| c.chunks(32).map(|r| r.to_vec()).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    Value::Array(items)
}

fn floats(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        other => vec![other.as_f64().unwrap() as f32],
    }
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
}

/// Starts the HTTP test server and a gRPC server over the same state.
async fn start() -> (TestServer, Channel) {
    let server = TestServer::start(|_| {}).await;
    let grpc = server.grpc().await;
    (server, grpc)
}

async fn post_raw(server: &TestServer, path: &str, body: Vec<u8>, header: Option<usize>) -> Reply {
    let mut request = server.client.post(server.url(path)).body(body);
    if let Some(h) = header {
        request = request.header(binary::HEADER_LENGTH_HEADER, h.to_string());
    }
    Reply::read(request.send().await.unwrap()).await
}

fn protocol_error(reply: &Reply, status: u16) -> String {
    assert_eq!(reply.status.as_u16(), status, "{:?}", reply.body);
    reply.body["error"]
        .as_str()
        .expect("{\"error\": string}")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kserve_rest_json_and_binary_tensors_give_the_same_logits() {
    let (server, _) = start().await;
    let tensor = input_tensor(2);
    let inputs = [("input".to_string(), TensorValue::F32(tensor.clone()))];
    let json_body = binary::encode_infer_request(&inputs, &[], false);
    let as_json = post_raw(&server, "/v2/models/tiny/infer", json_body.body, None).await;
    assert_eq!(as_json.status.as_u16(), 200, "{:?}", as_json.body);
    let out = &as_json.body["outputs"][0];
    assert_eq!(out["shape"], json!([2, CLASSES]));

    let bin = binary::encode_infer_request(&inputs, &[], true);
    let response = server
        .client
        .post(server.url("/v2/models/tiny/versions/1/infer"))
        .header(
            binary::HEADER_LENGTH_HEADER,
            bin.header_length.unwrap().to_string(),
        )
        .body(bin.body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // Without binary_data_output the answer is plain JSON.
    let body = response.bytes().await.unwrap();
    let outputs = binary::parse_infer_response(&body, None).unwrap();
    let TensorValue::F32(binary_logits) = binary::decode_tensor(&outputs[0], 1 << 20).unwrap()
    else {
        panic!("not FP32")
    };
    assert_close(&floats(&out["data"]), binary_logits.data());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kserve_rest_errors_are_bare_strings_with_fitting_statuses() {
    let (server, _) = start().await;
    let good = binary::encode_infer_request(
        &[("input".into(), TensorValue::F32(input_tensor(1)))],
        &[],
        true,
    );
    let unknown = post_raw(
        &server,
        "/v2/models/nope/infer",
        good.body.clone(),
        good.header_length,
    )
    .await;
    protocol_error(&unknown, 404);

    let small = Tensor::new(vec![1, 3, 16, 16], vec![0.0; 768]).unwrap();
    let wrong =
        binary::encode_infer_request(&[("input".into(), TensorValue::F32(small))], &[], false);
    protocol_error(
        &post_raw(&server, "/v2/models/tiny/infer", wrong.body, None).await,
        400,
    );

    let bool_body =
        json!({"inputs": [{"name": "input", "shape": [1], "datatype": "BOOL", "data": [true]}]});
    let reply = post_raw(
        &server,
        "/v2/models/tiny/infer",
        bool_body.to_string().into_bytes(),
        None,
    )
    .await;
    assert!(protocol_error(&reply, 400).contains("BOOL"));

    let reply = post_raw(
        &server,
        "/v2/models/tiny/infer",
        b"{\"inputs\": [".to_vec(),
        None,
    )
    .await;
    protocol_error(&reply, 400);

    let header = good.header_length.unwrap();
    let mut cut = good.body.clone();
    cut.truncate(cut.len() - 7);
    let reply = post_raw(&server, "/v2/models/tiny/infer", cut, Some(header)).await;
    assert!(protocol_error(&reply, 400).contains("truncated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kserve_grpc_raw_and_typed_inputs_match_rest_and_errors_have_status_codes() {
    let (server, grpc) = start().await;
    let mut client = GrpcInferenceServiceClient::new(grpc.clone());
    assert!(
        client
            .server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    let meta = client
        .model_metadata(ModelMetadataRequest {
            name: "tiny".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.inputs[0].shape, vec![-1, 3, 32, 32]);
    assert_eq!(meta.versions, vec!["1", "2"]);

    let tensor = input_tensor(1);
    let input = InferInputTensor {
        name: "input".into(),
        datatype: "FP32".into(),
        shape: vec![1, 3, 32, 32],
        ..Default::default()
    };
    let raw = ModelInferRequest {
        model_name: "tiny".into(),
        inputs: vec![input.clone()],
        raw_input_contents: vec![fovea_proto::kserve::f32_le_bytes(tensor.data())],
        ..Default::default()
    };
    let answer = client.model_infer(raw.clone()).await.unwrap().into_inner();
    let raw_out = &answer.raw_output_contents[0];
    let raw_logits: Vec<f32> = raw_out
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(raw_logits.len(), CLASSES);

    let typed = ModelInferRequest {
        model_name: "tiny".into(),
        inputs: vec![InferInputTensor {
            contents: Some(InferTensorContents {
                fp32_contents: tensor.data().to_vec(),
                ..Default::default()
            }),
            ..input.clone()
        }],
        ..Default::default()
    };
    let answer = client.model_infer(typed).await.unwrap().into_inner();
    assert!(answer.raw_output_contents.is_empty());
    let typed_logits = &answer.outputs[0].contents.as_ref().unwrap().fp32_contents;
    assert_close(&raw_logits, typed_logits);

    let rest =
        binary::encode_infer_request(&[("input".into(), TensorValue::F32(tensor))], &[], false);
    let reply = post_raw(&server, "/v2/models/tiny/infer", rest.body, None).await;
    assert_close(&raw_logits, &floats(&reply.body["outputs"][0]["data"]));

    let code = |r: Result<tonic::Response<_>, tonic::Status>| {
        r.map(|_: tonic::Response<_>| ()).unwrap_err().code()
    };
    let unknown = ModelInferRequest {
        model_name: "nope".into(),
        ..raw.clone()
    };
    assert_eq!(code(client.model_infer(unknown).await), Code::NotFound);
    let mut truncated = raw.clone();
    truncated.raw_input_contents[0] = truncated.raw_input_contents[0].slice(..100);
    assert_eq!(
        code(client.model_infer(truncated).await),
        Code::InvalidArgument
    );
    let mut wrong_dtype = raw.clone();
    wrong_dtype.inputs[0].datatype = "BOOL".into();
    assert_eq!(
        code(client.model_infer(wrong_dtype).await),
        Code::InvalidArgument
    );
    let mut wrong_shape = raw;
    wrong_shape.inputs[0].shape = vec![4, 3, 16, 16];
    assert_eq!(
        code(client.model_infer(wrong_shape).await),
        Code::InvalidArgument
    );
}

fn predict_request(model: &str, proto: TensorProto) -> PredictRequest {
    PredictRequest {
        model_spec: Some(ModelSpec {
            name: model.into(),
            ..Default::default()
        }),
        inputs: HashMap::from([("input".to_string(), proto)]),
        output_filter: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tf_grpc_predict_status_and_errors() {
    let (server, grpc) = start().await;
    let mut client = PredictionServiceClient::new(grpc.clone());
    let tensor = input_tensor(1);
    let answer = client
        .predict(predict_request("tiny", tf::tensor_to_proto(&tensor)))
        .await
        .unwrap()
        .into_inner();
    let logits = &answer.outputs["logits"].float_val;
    assert_eq!(logits.len(), CLASSES);
    assert_eq!(
        answer.model_spec.unwrap().version_choice,
        Some(fovea_proto::tensorflow::serving::model_spec::VersionChoice::Version(2))
    );

    let image = png(3);
    let strings = tf::bytes_to_proto(&BytesTensor {
        shape: vec![1],
        items: vec![Bytes::from(image.clone())],
    });
    let from_image = client
        .predict(predict_request("tiny", strings))
        .await
        .unwrap()
        .into_inner();
    let simple = server.post_images("?model=tiny&top_k=1", &[image]).await;
    let image_logits = &from_image.outputs["logits"].float_val;
    let best = image_logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    let labels = fovea_core::Labels::cifar10();
    assert_eq!(
        simple.body["class"],
        json!(labels.name(best)),
        "{:?}",
        simple.body
    );

    let code = |r: Result<tonic::Response<_>, tonic::Status>| {
        r.map(|_: tonic::Response<_>| ()).unwrap_err().code()
    };
    assert_eq!(
        code(
            client
                .predict(predict_request("nope", tf::tensor_to_proto(&tensor)))
                .await
        ),
        Code::NotFound
    );
    let boolean = TensorProto {
        dtype: DataType::DtBool as i32,
        bool_val: vec![true],
        ..Default::default()
    };
    assert_eq!(
        code(client.predict(predict_request("tiny", boolean)).await),
        Code::InvalidArgument
    );
    let small = Tensor::new(vec![1, 3, 16, 16], vec![0.0; 768]).unwrap();
    assert_eq!(
        code(
            client
                .predict(predict_request("tiny", tf::tensor_to_proto(&small)))
                .await
        ),
        Code::InvalidArgument
    );

    let mut models = ModelServiceClient::new(grpc.clone());
    let status = models
        .get_model_status(GetModelStatusRequest {
            model_spec: Some(ModelSpec {
                name: "tiny".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let versions: Vec<i64> = status
        .model_version_status
        .iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(versions, vec![1, 2]);
    let missing = models
        .get_model_status(GetModelStatusRequest {
            model_spec: Some(ModelSpec {
                name: "nope".into(),
                ..Default::default()
            }),
        })
        .await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tf_rest_row_columnar_and_b64_predict_and_errors() {
    let (server, _) = start().await;
    let tensor = input_tensor(2);
    let rows = server
        .client
        .post(server.url("/v1/models/tiny:predict"))
        .json(&json!({"instances": nested(&tensor)}))
        .send()
        .await
        .unwrap();
    let rows = Reply::read(rows).await;
    assert_eq!(rows.status.as_u16(), 200, "{:?}", rows.body);
    let columns = server
        .client
        .post(server.url("/v1/models/tiny/versions/1:predict"))
        .json(&json!({"inputs": {"input": nested(&tensor)}}))
        .send()
        .await
        .unwrap();
    let columns = Reply::read(columns).await;
    assert_eq!(floats(&rows.body["predictions"]).len(), 2 * CLASSES);
    assert_close(
        &floats(&rows.body["predictions"]),
        &floats(&columns.body["outputs"]),
    );

    let b64 = base64::engine::general_purpose::STANDARD.encode(png(5));
    let image = server
        .client
        .post(server.url("/v1/models/tiny:predict"))
        .json(&json!({"instances": [{"b64": b64}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        floats(&Reply::read(image).await.body["predictions"]).len(),
        CLASSES
    );

    let status = Reply::read(
        server
            .client
            .get(server.url("/v1/models/tiny/versions/2"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status.body["model_version_status"][0]["state"], "AVAILABLE");

    let post = |path: &'static str, body: Vec<u8>| {
        let request = server.client.post(server.url(path)).body(body);
        async move { Reply::read(request.send().await.unwrap()).await }
    };
    protocol_error(
        &post(
            "/v1/models/nope:predict",
            json!({"instances": [[1.0]]}).to_string().into_bytes(),
        )
        .await,
        404,
    );
    protocol_error(
        &post("/v1/models/tiny:predict", b"{\"instances\": [1, 2".to_vec()).await,
        400,
    );
    protocol_error(
        &post(
            "/v1/models/tiny:predict",
            json!({"instances": [[1.0, 2.0], [3.0]]})
                .to_string()
                .into_bytes(),
        )
        .await,
        400,
    );
    protocol_error(
        &post(
            "/v1/models/tiny:predict",
            json!({"instances": [[1.0, 2.0]]}).to_string().into_bytes(),
        )
        .await,
        400,
    );
    protocol_error(
        &post(
            "/v1/models/tiny:predict",
            json!({"instances": [["a", "b"]]}).to_string().into_bytes(),
        )
        .await,
        400,
    );
}

/// The stage names of a `Server-Timing` value, checking each duration is a
/// non-negative number of milliseconds.
fn timing_stages(value: &str) -> Vec<String> {
    value
        .split(", ")
        .map(|entry| {
            let (name, duration) = entry
                .split_once(";dur=")
                .unwrap_or_else(|| panic!("not `name;dur=ms`: {value:?}"));
            let ms: f64 = duration.parse().unwrap_or_else(|_| panic!("{value:?}"));
            assert!(ms >= 0.0, "{value:?}");
            name.to_string()
        })
        .collect()
}

fn header_stages(reply: &Reply) -> Vec<String> {
    let value = reply
        .headers
        .get("server-timing")
        .unwrap_or_else(|| panic!("no Server-Timing on {:?}", reply.body))
        .to_str()
        .unwrap();
    timing_stages(value)
}

fn metadata_stages(metadata: &tonic::metadata::MetadataMap) -> Vec<String> {
    timing_stages(
        metadata
            .get("server-timing")
            .expect("server-timing metadata")
            .to_str()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_reports_the_stages_a_request_passed_through() {
    let (server, grpc) = start().await;
    let image_stages = ["decode_wait", "preprocess", "queue", "inference", "total"];
    let tensor_stages = ["queue", "inference", "total"];

    let simple = server.post_images("", &[png(1)]).await;
    assert_eq!(simple.status.as_u16(), 200, "{:?}", simple.body);
    assert_eq!(header_stages(&simple), image_stages);

    let tensor = input_tensor(2);
    let tf_rest = server
        .client
        .post(server.url("/v1/models/tiny:predict"))
        .json(&json!({"instances": nested(&tensor)}))
        .send()
        .await
        .unwrap();
    assert_eq!(header_stages(&Reply::read(tf_rest).await), tensor_stages);

    let b64 = base64::engine::general_purpose::STANDARD.encode(png(2));
    let classify = server
        .client
        .post(server.url("/v1/models/tiny:classify"))
        .json(&json!({"examples": [{"image": {"b64": b64}}]}))
        .send()
        .await
        .unwrap();
    let classify = Reply::read(classify).await;
    assert_eq!(classify.status.as_u16(), 200, "{:?}", classify.body);
    assert_eq!(header_stages(&classify), image_stages);

    let kserve = server
        .client
        .post(server.url("/v2/models/tiny/infer"))
        .json(&json!({"inputs": [{
            "name": "input", "shape": tensor.shape(), "datatype": "FP32", "data": tensor.data()
        }]}))
        .send()
        .await
        .unwrap();
    let kserve = Reply::read(kserve).await;
    assert_eq!(kserve.status.as_u16(), 200, "{:?}", kserve.body);
    assert_eq!(header_stages(&kserve), tensor_stages);

    // Errors carry no timings: nothing ran.
    let refused = server.post_images("?top_k=0", &[png(1)]).await;
    refused.expect_error(400);
    assert!(refused.headers.get("server-timing").is_none());

    let mut tf_grpc = PredictionServiceClient::new(grpc.clone());
    let answer = tf_grpc
        .predict(predict_request(
            "tiny",
            tf::tensor_to_proto(&input_tensor(1)),
        ))
        .await
        .unwrap();
    assert_eq!(metadata_stages(answer.metadata()), tensor_stages);

    let mut kserve_grpc = GrpcInferenceServiceClient::new(grpc.clone());
    let image = png(4);
    let answer = kserve_grpc
        .model_infer(ModelInferRequest {
            model_name: "tiny".into(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "BYTES".into(),
                shape: vec![1],
                contents: Some(InferTensorContents {
                    bytes_contents: vec![image.into()],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(metadata_stages(answer.metadata()), image_stages);
}
