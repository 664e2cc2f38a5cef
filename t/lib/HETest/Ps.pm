package HETest::Ps;

=head1 NAME

HETest::Ps - look at processes from tests: the checker, descriptors, threads

=head1 SYNOPSIS

    use HETest::Ps qw(:all);
    my @pids = checkers($state_file);     # live checkers of that state
    my @pids = mappers($state_file, 'rt-he-checker');  # by mapping
    my @fds  = fds($pid);                 # [ fd => target ], ...
    my %st   = proc_status($pid);         # Threads, VmRSS (kB), PPid, Uid
    wait_for(5, sub { !checkers($state) }) or fail(...);

Linux only (/proc); a test that needs it skips elsewhere.

=cut

use strict;
use warnings;

use Exporter qw(import);
use Time::HiRes ();

our @EXPORT_OK = qw(checkers fds proc_status proc_cmdline wait_for
                    children_of run_children mappers);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

sub proc_cmdline {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/cmdline" or return undef;
    local $/;
    my $c = <$fh>;
    return undef unless defined $c;
    $c =~ s/\0+\z//;
    $c =~ tr/\0/ /;
    return $c;
}

sub proc_status {
    my ($pid) = @_;
    my %s;
    open my $fh, '<', "/proc/$pid/status" or return ();
    while (my $line = <$fh>) {          # not $_: callers grep with it
        $s{$1} = $2 if $line =~ /^(\w+):\s+(.*?)\s*$/;
    }
    $s{State} =~ s/\s.*// if defined $s{State};
    return %s;
}

# Live (not zombie) processes whose command line names this checker.  Its
# run children inherit the title (and, for a moment after the fork, the
# name): a process whose parent carries the title too is one of those.
sub checkers {
    my ($state) = @_;
    my $want = defined $state ? "rt-healthendpoint checker ($state)"
                              : 'rt-healthendpoint checker';
    my @pids;
    opendir my $d, '/proc' or return ();
    for my $pid (grep { /^\d+$/ } readdir $d) {
        my $c = proc_cmdline($pid) // next;
        next unless index($c, $want) == 0;
        my %s = proc_status($pid);
        next if ($s{State} // '') =~ /^[ZX]/;
        my $parent = proc_cmdline($s{PPid} // 0) // '';
        push @pids, $pid unless index($parent, 'rt-healthendpoint checker') == 0;
    }
    my @sorted = sort { $a <=> $b } @pids;   # a count in scalar context
    return @sorted;
}

# Live processes that have $path mapped (/proc/PID/maps), named $name if
# given: finds a checker whatever its title says (under mod_perl $0 cannot
# be longer than Apache's argv[0]).  Other users' maps need root.
sub mappers {
    my ($path, $name) = @_;
    my @pids;
    opendir my $d, '/proc' or return ();
    for my $pid (grep { /^\d+$/ } readdir $d) {
        open my $fh, '<', "/proc/$pid/maps" or next;
        next unless grep { /\s\Q$path\E$/ } <$fh>;
        my %s = proc_status($pid);
        next if ($s{State} // '') =~ /^[ZX]/;
        push @pids, $pid if !defined $name || ($s{Name} // '') eq $name;
    }
    my @sorted = sort { $a <=> $b } @pids;
    return @sorted;
}

# The live children of a checker checking (rt-he-database, rt-he-redis);
# with $idle those waiting for a run (rt-he-idle) too.
sub run_children {
    my ($checker, $idle) = @_;
    my $names = $idle ? qr/^rt-he-(?:database|redis|idle)$/
                      : qr/^rt-he-(?:database|redis)$/;
    return grep {
        my %s = proc_status($_);
        ($s{Name} // '') =~ $names && ($s{State} // '') !~ /^[ZX]/
    } children_of($checker);
}

sub children_of {
    my ($ppid) = @_;
    my @pids;
    opendir my $d, '/proc' or return ();
    for my $pid (grep { /^\d+$/ } readdir $d) {
        my %s = proc_status($pid);
        push @pids, $pid if ($s{PPid} // -1) == $ppid;
    }
    return @pids;
}

sub fds {
    my ($pid) = @_;
    opendir my $d, "/proc/$pid/fd" or return ();
    return map { [ $_ => readlink("/proc/$pid/fd/$_") // '?' ] }
           sort { $a <=> $b } grep { /^\d+$/ } readdir $d;
}

# Poll $code every $step seconds (0.05) for up to $seconds; returns its
# last value.  The one polling loop of the test libraries.
sub wait_for {
    my ($seconds, $code, $step) = @_;
    my $until = Time::HiRes::time() + $seconds;
    while (1) {
        my $v = $code->();
        return $v if $v || Time::HiRes::time() > $until;
        Time::HiRes::sleep($step || 0.05);
    }
}

1;
