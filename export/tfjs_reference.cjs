// Reference run of a TF.js graph model with @tensorflow/tfjs (pure JavaScript, CPU backend).
// Used by export/nanodet.py for parity: node tfjs_reference.cjs MODEL.json IN.f32 OUT_PREFIX N,C,H,W
// IN.f32 holds N already preprocessed inputs (float32, little-endian), run one at a time; output
// k of image n is written as OUT_PREFIX.<n>.<k>.f32 and the names and shapes as OUT_PREFIX.json.
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

async function main() {
  const [modelPath, inPath, outPrefix, shapeArg] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const json = JSON.parse(fs.readFileSync(modelPath, 'utf8'));
  const specs = [];
  const buffers = [];
  for (const group of json.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(path.dirname(modelPath), p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: json.modelTopology, weightSpecs: specs, weightData,
    format: json.format, generatedBy: json.generatedBy, convertedBy: json.convertedBy,
    signature: json.signature,
  }));
  const shape = shapeArg.split(',').map(Number);
  const raw = fs.readFileSync(inPath);
  const data = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const names = Object.keys(json.signature.outputs);
  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  const meta = [];
  for (let n = 0; n < shape[0]; n++) {
    const input = tf.tensor(data.subarray(n * per, (n + 1) * per), [1, ...shape.slice(1)], 'float32');
    const outs = model.execute(input, names);
    for (let i = 0; i < names.length; i++) {
      const t = outs[i];
      const values = await t.data();
      fs.writeFileSync(`${outPrefix}.${n}.${i}.f32`, Buffer.from(values.buffer, values.byteOffset, values.byteLength));
      if (n === 0) meta.push({ name: names[i], shape: t.shape });
      t.dispose();
    }
    input.dispose();
  }
  fs.writeFileSync(`${outPrefix}.json`, JSON.stringify({ outputs: meta, tfjs: tf.version.tfjs }));
}

main().catch((err) => { console.error(String(err && err.stack || err)); process.exit(1); });
