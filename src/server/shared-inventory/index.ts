/** The fleet's agents shared between server instances (Redis), so every instance resolves every target. */
export {
  createRedisInventory,
  type RedisInventory,
  type RedisInventoryOptions,
} from './redis-inventory.js';
