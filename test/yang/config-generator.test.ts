// The benchmark's generated running configuration must stay valid against the model, or the
// benchmark would time an error path instead of a full validation.
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateRunningConfig } from '../../bench/yang-config-generator.js';
import { BindingValidator, YanglintValidator, yanglintAvailable, type DocumentValidator } from './yang-validators.js';

describe('benchmark running-configuration generator', function () {
  let dir: string;
  let file: string;
  const validators: DocumentValidator[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tandem-gen-'));
    file = path.join(dir, 'running.xml');
    // Every generator branch (tcp/udp/icmp/any rules, three profiles, persistence) at a small size.
    writeFileSync(file, generateRunningConfig({ virtualServices: 60, firewallRules: 80, membersPerService: 3 }));
    const binding = await BindingValidator.load();
    if (typeof binding !== 'string') validators.push(binding);
    if (yanglintAvailable()) validators.push(new YanglintValidator());
  });
  after(() => {
    for (const v of validators) v.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('produces a configuration both validators accept', function () {
    if (validators.length === 0) this.skip();
    for (const v of validators) {
      const outcome = v.validate(file, 'config');
      expect(outcome.errors, v.name).to.deep.equal([]);
      expect(outcome.valid, v.name).to.equal(true);
    }
  });

  it('has the requested number of virtual services and rules', () => {
    const xml = generateRunningConfig({ virtualServices: 7, firewallRules: 13, membersPerService: 2 });
    expect(xml.match(/<virtual-service /g)).to.have.length(7);
    expect(xml.match(/<rule>\s*<name>r/g)).to.have.length(13);
    expect(xml.match(/<pool-member>/g)).to.have.length(14);
  });

  it('refuses sizes it cannot generate', () => {
    expect(() => generateRunningConfig({ virtualServices: -1, firewallRules: 1, membersPerService: 1 })).to.throw(RangeError, /virtualServices/);
    expect(() => generateRunningConfig({ virtualServices: 1, firewallRules: 1.5, membersPerService: 1 })).to.throw(RangeError, /firewallRules/);
    expect(() => generateRunningConfig({ virtualServices: 1e6, firewallRules: 1, membersPerService: 1 })).to.throw(RangeError, /virtualServices/);
  });
});
