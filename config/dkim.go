package config

// The dkim: list (DESIGN.md §7): which outbound mail is signed with which
// key. The keys are loaded as the file is decoded; relay.Signer signs.

import (
	"go.yaml.in/yaml/v3"

	"sekisho/internal/mailaddr"
	"sekisho/relay"
)

// DKIMConfig is one entry of dkim: outbound mail whose From domain is
// Domain (or below it, with Subdomains) is signed with the key in KeyFile,
// published under Selector.
type DKIMConfig struct {
	Domain     string `yaml:"domain" type:"domain"`
	Selector   string `yaml:"selector"`
	KeyFile    string `yaml:"key_file" type:"file"`
	Subdomains bool   `yaml:"subdomains"`
}

// UnmarshalYAML decodes an entry strictly and loads its key, so that a
// missing, unreadable or broken key file is an error naming the line of its
// key_file (check-config; serve refuses to start).
func (d *DKIMConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return lineErr(n, "a dkim entry is {domain: D, selector: S, key_file: FILE, subdomains: false}")
	}
	val := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		switch k.Value {
		case "domain", "selector", "key_file", "subdomains":
			val[k.Value] = n.Content[i+1]
		default:
			// As schemaErrors words it (the loader checks the schema first).
			return lineErr(k, "unknown key %q in a dkim entry", k.Value)
		}
	}
	type plain DKIMConfig // without this method
	if err := n.Decode((*plain)(d)); err != nil {
		return err
	}
	at := func(key string) *yaml.Node {
		if v := val[key]; v != nil {
			return v
		}
		return n
	}
	switch {
	case d.Domain == "":
		return lineErr(n, "dkim: domain is required")
	case d.Selector == "":
		return lineErr(n, "dkim: selector is required")
	case d.KeyFile == "":
		return lineErr(n, "dkim: key_file is required (make one with: sekisho dkim keygen -domain %s -selector %s)", d.Domain, d.Selector)
	}
	if _, err := mailaddr.ToASCII(d.Domain); err != nil {
		return lineErr(at("domain"), "dkim: domain %q: %v", d.Domain, err)
	}
	if _, err := relay.DKIMRecordName(d.Selector, d.Domain); err != nil {
		return lineErr(at("selector"), "%v", err)
	}
	if _, err := relay.LoadDKIMKey(d.KeyFile); err != nil {
		return lineErr(at("key_file"), "%v", err)
	}
	return nil
}

// DKIMKeys is the dkim: list as relay takes it.
func (c *Config) DKIMKeys() []relay.DKIMKey {
	keys := make([]relay.DKIMKey, 0, len(c.DKIM))
	for _, d := range c.DKIM {
		keys = append(keys, relay.DKIMKey{Domain: d.Domain, Selector: d.Selector, KeyFile: d.KeyFile, Subdomains: d.Subdomains})
	}
	return keys
}

// validateDKIM loads every key, as serve will: besides what each entry's
// decoding checks, a selector listed twice for a domain is refused, and a
// configuration built without the YAML decoder is checked too.
func (c *Config) validateDKIM() error {
	if _, err := c.DKIMSigner(); err != nil {
		return invalid(err.Error(), "dkim")
	}
	return nil
}

// DKIMSigner builds the signer of outbound mail from dkim:; nil, nil when
// no key is configured (then nothing is signed).
func (c *Config) DKIMSigner() (*relay.Signer, error) {
	if len(c.DKIM) == 0 {
		return nil, nil
	}
	return relay.NewSigner(c.DKIMKeys())
}
