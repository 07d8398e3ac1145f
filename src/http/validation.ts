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
