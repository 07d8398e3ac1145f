/** An address as logs show it: the first character of the local part and the domain (`a***@example.com`). */
export function maskAddress(address: string): string {
  const at = address.lastIndexOf('@')
  if (at <= 0) return '***'
  return `${[...address.slice(0, at)][0]}***${address.slice(at)}`
}
