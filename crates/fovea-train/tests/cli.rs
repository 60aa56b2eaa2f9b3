//! The command lines end to end, as `fovea train|eval|export` run them: a
//! tiny network trained on CIFAR-10 binary files written here, evaluated with
//! and without flip TTA, exported fp32 and int8 into a model repository that
//! fovea-engine can open.

mod common;

use clap::Parser;
use fovea_train::cli::{EvalArgs, ExportArgs, TrainArgs, run_eval, run_export, run_train};

#[derive(Parser)]
enum Command {
    Train(TrainArgs),
    Eval(EvalArgs),
    Export(ExportArgs),
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    match Command::try_parse_from(std::iter::once("fovea").chain(args.iter().copied()))? {
        Command::Train(a) => run_train(a),
        Command::Eval(a) => run_eval(a),
        Command::Export(a) => run_export(a),
    }
}

#[test]
fn train_eval_and_export_run_end_to_end_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    std::fs::create_dir(&data).unwrap();
    common::write_cifar(&data.join("data_batch_1.bin"), 60);
    common::write_cifar(&data.join("test_batch.bin"), 20);
    let (data, out, repo) = (
        data.to_str().unwrap().to_string(),
        dir.path().join("run").to_str().unwrap().to_string(),
        dir.path().join("models").to_str().unwrap().to_string(),
    );
    let best = format!("{out}/best");
    let train = [
        "train",
        "--data",
        &data,
        "--out",
        &out,
        "--width",
        "4",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--val-size",
        "10",
        "--no-progress",
        "--precision",
        "fp32",
    ];
    run(&train).unwrap();
    assert!(
        std::path::Path::new(&out)
            .join("checkpoint/model.safetensors")
            .is_file()
    );
    let report = dir.path().join("eval");
    run(&[
        "eval",
        "--checkpoint",
        &best,
        "--data",
        &data,
        "--tta",
        "flip",
        "--out",
        report.to_str().unwrap(),
    ])
    .unwrap();
    let text = std::fs::read_to_string(report.join("report.txt")).unwrap();
    assert!(text.starts_with("test-time augmentation: flip"), "{text}");
    assert!(text.contains("on 20 images"), "{text}");
    run(&[
        "export",
        "--checkpoint",
        &best,
        "--repo",
        &repo,
        "--name",
        "tiny",
    ])
    .unwrap();
    run(&[
        "export",
        "--checkpoint",
        &best,
        "--repo",
        &repo,
        "--name",
        "tiny",
        "--quantize",
        "int8",
        "--data",
        &data,
        "--calibration-images",
        "16",
    ])
    .unwrap();
    let versions = fovea_engine::version_dirs(&std::path::Path::new(&repo).join("tiny")).unwrap();
    assert_eq!(versions, vec![1, 2]);
    let int8 = std::fs::read(format!("{repo}/tiny/2/model.onnx")).unwrap();
    assert!(fovea_quantize::is_quantized(&int8).unwrap());
}

#[test]
fn a_truncated_training_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data_batch_1.bin");
    common::write_cifar(&file, 3);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 5]).unwrap();
    let message = run(&[
        "train",
        "--data",
        dir.path().to_str().unwrap(),
        "--out",
        dir.path().join("run").to_str().unwrap(),
        "--val-size",
        "1",
    ])
    .unwrap_err()
    .to_string();
    assert!(message.contains("data_batch_1.bin"), "{message}");
    assert!(message.contains("truncated"), "{message}");
}
