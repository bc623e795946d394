/**
 * zod's mini API with English messages, for schemas that a lightweight process (the host agent) loads at every
 * start: esbuild keeps only the functions a schema uses (~25 KB for the agent's config), where `import { z } from
 * 'zod'` evaluates the whole classic API (470 KB, ~4 MiB of an idle agent's RSS). The mini API loads no locale of
 * its own; the English one gives the classic API's messages.
 */
import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

config(en());

export * from 'zod/mini';
