//! The call-frame information of one code address, reduced to what a stack walk needs on x86-64:
//! where the caller's stack pointer (the canonical frame address, CFA) is, and whether the
//! caller's frame pointer was saved on the stack.
//!
//! Read from the `.eh_frame` of the loaded object that holds the address (found with
//! `dl_iterate_phdr`, searched through its `.eh_frame_hdr` table), by `gimli` without allocating.
//! This is the work the platform's unwinder does for every frame of every capture; here it is
//! done once per return address, and [`super::stack`] keeps the answer.
//!
//! Only the rules ordinary compiled code uses are taken: the CFA at a fixed offset from the stack
//! pointer or from the frame pointer, the return address just below the CFA, and the frame pointer
//! either unchanged or saved at a fixed offset from the CFA. Anything else (a CFA computed by an
//! expression, a signal frame) is [`None`]: a walk stops there, or hands the capture to the
//! unwinder. The outermost frame of a stack (whose return address is undefined) has a rule that
//! says so.

use core::slice;

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, NativeEndian, Pointer, Register, RegisterRule,
    UnwindContext, UnwindContextStorage, UnwindSection, UnwindTableRow, X86_64,
};

/// How to find the caller's frame from a frame's registers, at one code address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    /// The frame is the outermost of its stack: its return address is undefined (`_start`, a
    /// thread's entry), and a walk ends there.
    pub(crate) outermost: bool,
    /// The CFA is the frame pointer plus the offset (else the stack pointer plus it).
    pub(crate) from_frame_pointer: bool,
    /// Bytes from the register to the CFA.
    pub(crate) cfa_offset: u16,
    /// The caller's frame pointer is saved this many bytes below the CFA (else it is unchanged).
    pub(crate) saved_frame_pointer: Option<u16>,
}

/// An unwind context on the stack, small: the CFI of compiled x86-64 code names a few registers
/// (gimli's default keeps room for 192 rules in four rows, some kilobytes).
struct Small;

impl<T: gimli::ReaderOffset> UnwindContextStorage<T> for Small {
    type Rules = [(Register, RegisterRule<T>); 24];
    type Stack = [UnwindTableRow<T, Self>; 2];
}

/// The rule at code address `pc` (for a return address, pass the address of the call: one less).
pub(crate) fn rule_at(pc: usize) -> Option<Rule> {
    crate::os::loaded::with_object_of(pc, |object| {
        let (hdr_start, hdr_bytes) = object.eh_frame_hdr()?;
        read_rule(pc, hdr_start, hdr_bytes, |addr| object.segment_of(addr))
    })
    .flatten()
}

/// The rule at `pc` from the object's `.eh_frame_hdr` (at `hdr_start`), whose `.eh_frame` lies
/// in the loaded segment `segment_of` names.
fn read_rule(
    pc: usize,
    hdr_start: usize,
    hdr_bytes: &[u8],
    segment_of: impl Fn(usize) -> Option<(usize, usize)>,
) -> Option<Rule> {
    let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_start as u64);
    let parsed = EhFrameHdr::new(hdr_bytes, NativeEndian)
        .parse(&bases, 8)
        .ok()?;
    let Pointer::Direct(frame_start) = parsed.eh_frame_ptr() else {
        return None;
    };
    let frame_start = frame_start as usize;
    let (_, segment_end) = segment_of(frame_start)?;
    // SAFETY: `.eh_frame` lies in a loaded segment of the object, mapped and readable to its end
    // while the object is loaded (as above).
    let frame_bytes =
        unsafe { slice::from_raw_parts(frame_start as *const u8, segment_end - frame_start) };
    let eh_frame = EhFrame::new(frame_bytes, NativeEndian);
    let bases = bases.set_eh_frame(frame_start as u64);
    let table = parsed.table()?;
    let mut ctx = UnwindContext::<usize, Small>::new_in();
    let row = table
        .unwind_info_for_address(&eh_frame, &bases, &mut ctx, pc as u64, |s, b, o| {
            s.cie_from_offset(b, o)
        })
        .ok()?;
    reduce(row)
}

/// The row's rules, if they are ones a walk follows.
fn reduce<S: UnwindContextStorage<usize>>(row: &UnwindTableRow<usize, S>) -> Option<Rule> {
    if matches!(row.register(X86_64::RA), Some(RegisterRule::Undefined)) {
        return Some(Rule {
            outermost: true,
            from_frame_pointer: false,
            cfa_offset: 0,
            saved_frame_pointer: None,
        });
    }
    let CfaRule::RegisterAndOffset { register, offset } = *row.cfa() else {
        return None;
    };
    let from_frame_pointer = match register {
        X86_64::RSP => false,
        X86_64::RBP => true,
        _ => return None,
    };
    // The return address sits in the word just below the CFA (the `call` pushed it there).
    if !matches!(row.register(X86_64::RA), Some(RegisterRule::Offset(-8))) {
        return None;
    }
    let saved_frame_pointer = match row.register(X86_64::RBP) {
        None | Some(RegisterRule::SameValue) => None,
        Some(RegisterRule::Offset(k)) if k < 0 && k % 8 == 0 => Some(u16::try_from(-k).ok()?),
        Some(_) => return None,
    };
    Some(Rule {
        outermost: false,
        from_frame_pointer,
        cfa_offset: u16::try_from(offset).ok().filter(|&o| o >= 8)?,
        saved_frame_pointer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The return address into this function's caller, found by the rule at a code address of
    /// this function (from the stack pointer, or the frame pointer, read there); and the
    /// unwinder's first return addresses from here.
    #[inline(never)]
    fn return_address_by_rule() -> (usize, Vec<usize>) {
        let (pc, sp, fp): (usize, usize, usize);
        // SAFETY: reads three registers; touches no memory.
        unsafe {
            core::arch::asm!("lea {pc}, [rip]", "mov {sp}, rsp", "mov {fp}, rbp",
                pc = out(reg) pc, sp = out(reg) sp, fp = out(reg) fp,
                options(nomem, nostack, preserves_flags));
        }
        let rule = rule_at(pc).expect("compiled code has call-frame information");
        assert!(!rule.outermost);
        let cfa = if rule.from_frame_pointer { fp } else { sp } + usize::from(rule.cfa_offset);
        // SAFETY: the CFA of this frame is its caller's stack pointer; the word below it is the
        // return address `call` pushed, on the live stack of this thread.
        let ret = unsafe { ((cfa - 8) as *const usize).read() };
        let mut unwound = Vec::new();
        backtrace::trace(|f| {
            unwound.push(f.ip() as usize);
            unwound.len() < 4
        });
        (ret, unwound)
    }

    #[test]
    fn a_function_of_this_binary_has_a_rule_that_finds_its_return_address() {
        let (ret, unwound) = core::hint::black_box(return_address_by_rule());
        assert!(unwound.contains(&ret), "{ret:#x} not in {unwound:#x?}");
    }

    #[test]
    fn addresses_outside_any_object_have_no_rule() {
        assert_eq!(rule_at(8), None);
        assert_eq!(rule_at(usize::MAX - 4096), None);
    }
}
