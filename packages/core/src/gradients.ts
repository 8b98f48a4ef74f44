// tfjs-core ships its kernels' gradients separately; the umbrella @tensorflow/tfjs package registers them on
// import. relp needs them for every backward pass, so this one module does the same (idempotent, and the only
// import-time effect in core; package.json lists it under sideEffects so bundlers keep it).
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
