/** The body as an object of fields (none at all counts as empty), or undefined when it is another JSON value. */
export function bodyFields(body: unknown): Record<string, unknown> | undefined {
  if (body === undefined || body === null) return {}
  if (typeof body === 'object' && !Array.isArray(body)) return body as Record<string, unknown>
  return undefined
}

/** preValidation hook for routes whose body is optional: no body validates as `{}`. */
export async function emptyBodyAsObject(request: { body: unknown }): Promise<void> {
  request.body ??= {}
}

/**
 * preValidation hook: the named query parameters, when written as plain digits (at most 7), become numbers
 * so that an integer schema (minimum, maximum) judges them; anything else stays text and fails that schema.
 * The app never coerces types, so this is the one place a query string turns into a number.
 */
export function numericQuery(names: readonly string[]) {
  return async (request: { query: unknown }): Promise<void> => {
    const query = request.query as Record<string, unknown>
    for (const name of names) {
      const value = query[name]
      if (typeof value === 'string' && /^[0-9]{1,15}$/.test(value)) query[name] = Number(value)
    }
  }
}
