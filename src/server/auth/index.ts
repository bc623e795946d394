export * from './roles.js';
export * from './tokens.js';
export * from './middleware.js';
export * from './mtls.js';
export * from './revocation.js';
export * from './config.js';
export * from './key-ownership.js';
export * from './store-binding.js';
