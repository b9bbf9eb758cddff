// An exported function without a docstring, given to TypeDoc beside the real entry points by
// test/docs/api-reference.test.ts: the check must name it (and nothing else).
export function undocumentedFixture(value: number): number {
  return value + 1;
}
