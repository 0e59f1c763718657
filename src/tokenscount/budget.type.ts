import { Field, Int, ObjectType, registerEnumType } from 'type-graphql';
import type { BudgetState } from './budgets';

/** The GraphQL enum of budget periods (same values as `BudgetPeriod` in budgets.ts). */
export enum BudgetPeriodEnum {
  DAY = 'DAY',
  MONTH = 'MONTH',
}
registerEnumType(BudgetPeriodEnum, { name: 'BudgetPeriod' });

@ObjectType({ description: 'v2. A token budget of the caller, when one is configured.' })
export class Budget {
  @Field(() => BudgetPeriodEnum)
  period!: BudgetPeriodEnum;

  @Field(() => Int)
  limitTokens!: number;

  @Field(() => Int)
  usedTokens!: number;

  @Field(() => Int)
  remainingTokens!: number;

  @Field(() => Date)
  resetsAt!: Date;

  static from(s: BudgetState): Budget {
    return Object.assign(new Budget(), s, { period: s.period as BudgetPeriodEnum });
  }
}
