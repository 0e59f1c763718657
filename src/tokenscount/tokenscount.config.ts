import { ConfigError, int, str, type Env } from '../config.env';
import { DEFAULT_PRICES, parseModelPrices, type ModelPrice } from './prices';

/** MODEL_PRICES over the dated default table (prices.ts); a bad value is a {@link ConfigError}. */
export function loadModelPrices(env: Env): Record<string, ModelPrice> {
  const raw = str(env, 'MODEL_PRICES');
  if (raw === undefined) return { ...DEFAULT_PRICES };
  try {
    return { ...DEFAULT_PRICES, ...parseModelPrices(raw) };
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
}

/** USER_DAILY_TOKEN_BUDGET and USER_MONTHLY_TOKEN_BUDGET (0: off). */
export function loadBudgetsConfig(env: Env): { dayTokens: number; monthTokens: number } {
  return {
    dayTokens: int(env, 'USER_DAILY_TOKEN_BUDGET', 0, 0, 2_000_000_000),
    monthTokens: int(env, 'USER_MONTHLY_TOKEN_BUDGET', 0, 0, 2_000_000_000),
  };
}
