// A namespace-resolved XML element: the only shape of a parsed NETCONF message the RPC layer sees.

export interface XmlAttribute {
  name: string; // local name
  ns: string; // namespace URI ('' when unqualified)
  prefix: string;
  value: string;
}

export interface XmlElement {
  name: string; // local name
  ns: string; // resolved namespace URI ('' when none)
  prefix: string;
  attrs: XmlAttribute[];
  children: XmlElement[];
  /** Concatenated text content directly inside this element (trimmed only by callers). */
  text: string;
  /** Namespace declarations in scope at this element: prefix -> URI ('' for the default). */
  nsScope: Record<string, string>;
}
